"""The fragmented-MP4 reader against ffprobe, on files ffmpeg writes."""

from __future__ import annotations

import pytest

from vtp.core import fmp4
from vtp.core.tools import ffprobe_json


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory, ffmpeg):
    """H.264 without B-frames (every composition offset 0: ffprobe's times are exact),
    a fragment per keyframe every 0.5 s, a VFR stretch, and an AAC track file."""
    folder = tmp_path_factory.mktemp("fmp4")
    video = folder / "video.mp4"
    ffmpeg(
        "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x90:r=24:d=3",
        "-vf", "setpts='if(between(N,30,40),PTS+N*40,PTS+440)'", "-fps_mode", "passthrough",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "12", "-enc_time_base", "1:12288",
        "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(video),
    )
    audio = folder / "audio.mp4"
    ffmpeg(
        "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=3:sample_rate=48000", "-c:a", "aac", "-b:a", "96k",
        "-movflags", "+empty_moov+default_base_moof", "-frag_duration", "1000000", "-f", "mp4", str(audio),
    )
    return video, audio


def test_samples_match_ffprobe_packets(fragmented):
    video, _ = fragmented
    track = fmp4.read_track(video)
    packets = ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts,duration,size,flags", str(video)])["packets"]
    assert len(track.samples) == len(packets) == 72
    for sample, packet in zip(track.samples, packets):
        assert sample.presentation == int(packet["pts"])
        assert sample.size == int(packet["size"])
        assert sample.sync == ("K" in packet["flags"])
    # The VFR stretch is there: durations differ between samples.
    assert len({s.duration for s in track.samples}) > 1


def test_fragments_start_at_keyframes_and_tile_the_file(fragmented):
    video, _ = fragmented
    data = video.read_bytes()
    track = fmp4.parse(data)
    assert track.timescale == 12288
    assert track.init == data[: track.fragments[0].start]
    assert all(f.samples[0].sync for f in track.fragments)
    ends = [track.init_end] + [f.end for f in track.fragments]
    assert [f.start for f in track.fragments] == ends[:-1]
    # After the last fragment only ffmpeg's random-access index (mfra), which no segment carries.
    assert [b.kind for b in fmp4.boxes(data, ends[-1])] == [b"mfra"]
    assert len(track.fragments) == 6


def test_codec_strings_agree_with_ffprobe(fragmented):
    video, audio = fragmented
    stream = ffprobe_json(["-show_streams", "-select_streams", "v:0", str(video)])["streams"][0]
    codec = fmp4.codec_string(fmp4.read_track(video).init)
    assert codec.startswith("avc1.")
    assert int(codec[5:7], 16) == {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100}[stream["profile"]]
    assert int(codec[9:11], 16) == stream["level"]
    assert fmp4.codec_string(fmp4.read_track(audio).init) == "mp4a.40.2"


def test_audio_track_timescale_and_frames(fragmented):
    _, audio = fragmented
    track = fmp4.read_track(audio)
    assert track.timescale == 48000
    assert all(s.duration == 1024 for s in track.samples[:-1])
    packets = ffprobe_json(["-select_streams", "a:0", "-show_entries", "packet=pts", str(audio)])["packets"]
    assert len(packets) == len(track.samples)


def test_a_truncated_file_is_an_error(fragmented, tmp_path):
    video, _ = fragmented
    data = video.read_bytes()
    with pytest.raises(fmp4.Fmp4Error):
        fmp4.parse(data[: len(data) - 100])
    with pytest.raises(fmp4.Fmp4Error):
        fmp4.parse(data[data.index(b"moof") - 4 :])  # no init segment
