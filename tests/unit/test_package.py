"""Package: HLS (fMP4) media playlists + a master playlist, and a DASH MPD, by stream copy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from vtp.core import package
from vtp.core.tools import ffprobe_json, run_ffmpeg


@pytest.fixture(scope="module")
def packaged(staged, tmp_path_factory):
    out = tmp_path_factory.mktemp("packaged")
    hls = out / package.HLS_DIR
    dash = out / package.DASH_DIR
    config = staged.config
    for rendition in staged.plan.renditions:
        package.package_hls_media(staged.merged[rendition.name], hls / rendition.name, config, stream_kind="v")
    package.package_hls_media(staged.audio, hls / package.AUDIO_NAME, config, stream_kind="a")
    facts = {r.name: package.measure(staged.merged[r.name]) for r in staged.plan.renditions}
    audio_facts = package.measure(staged.audio, "a")
    master = package.write_master_playlist(
        hls, staged.plan.renditions, facts, staged.info.video.fps, audio_facts, config.audio_channels
    )
    package.package_dash(staged.merged, staged.audio, dash, config)
    return SimpleNamespace(
        staged=staged, hls=hls, dash=dash, master=master, facts=facts, audio_facts=audio_facts, config=config
    )


def first_packet_is_keyframe(init: Path, segment: Path, scratch: Path) -> bool:
    joined = scratch / "joined.mp4"
    joined.write_bytes(init.read_bytes() + segment.read_bytes())
    listing = ffprobe_json(
        ["-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries", "packet=flags", str(joined)]
    )["packets"]
    return bool(listing) and "K" in listing[0]["flags"]


# --- HLS -----------------------------------------------------------------------------------


def test_one_media_playlist_per_rung_with_regular_segments(packaged):
    staged = packaged.staged
    segment_s = packaged.config.segment_s
    boundaries = {}
    for rendition in staged.plan.renditions:
        playlist = m3u8.load(str(packaged.hls / rendition.name / package.MEDIA_PLAYLIST))
        assert playlist.is_endlist and playlist.playlist_type == "vod"
        assert playlist.target_duration == segment_s
        assert playlist.segment_map and playlist.segment_map[0].uri == "init.mp4"
        durations = [s.duration for s in playlist.segments]
        assert len(durations) == 3
        assert durations[:-1] == pytest.approx([segment_s] * (len(durations) - 1), abs=1e-3)
        assert sum(durations) == pytest.approx(staged.info.duration_s, abs=1 / staged.info.video.fps)
        for segment in playlist.segments:
            assert (packaged.hls / rendition.name / segment.uri).stat().st_size > 0
        boundaries[rendition.name] = [round(d, 4) for d in durations]
    assert len({tuple(b) for b in boundaries.values()}) == 1, "segment boundaries match across rungs"


def test_every_segment_starts_with_a_keyframe(packaged, tmp_path):
    for rendition in packaged.staged.plan.renditions:
        folder = packaged.hls / rendition.name
        playlist = m3u8.load(str(folder / package.MEDIA_PLAYLIST))
        for segment in playlist.segments:
            assert first_packet_is_keyframe(folder / "init.mp4", folder / segment.uri, tmp_path), segment.uri


def test_the_audio_playlist_lasts_the_video(packaged):
    playlist = m3u8.load(str(packaged.hls / package.AUDIO_NAME / package.MEDIA_PLAYLIST))
    total = sum(s.duration for s in playlist.segments)
    assert total == pytest.approx(packaged.staged.info.duration_s, abs=0.05)


def test_master_playlist_parses_with_codecs_resolution_bandwidth_and_audio_group(packaged):
    staged = packaged.staged
    master = m3u8.load(str(packaged.master))
    assert master.is_variant and master.is_independent_segments
    assert [m.type for m in master.media] == ["AUDIO"]
    audio = master.media[0]
    assert audio.group_id == "audio" and audio.default == "YES" and audio.channels == "2"
    assert (packaged.hls / audio.uri).exists()

    assert len(master.playlists) == len(staged.plan.renditions)
    audio_peak, audio_average = package.playlist_bandwidth(packaged.hls / audio.uri)
    for variant, rendition in zip(master.playlists, staged.plan.renditions):
        info = variant.stream_info
        assert variant.uri == f"{rendition.name}/{package.MEDIA_PLAYLIST}"
        assert (packaged.hls / variant.uri).exists()
        assert info.resolution == (rendition.width, rendition.height)
        video_codec, audio_codec = info.codecs.split(",")
        assert video_codec == packaged.facts[rendition.name].codec and video_codec.startswith("avc1.")
        assert audio_codec == "mp4a.40.2"
        assert info.audio == "audio"
        assert info.frame_rate == pytest.approx(30.0)
        peak, average = package.playlist_bandwidth(packaged.hls / variant.uri)
        assert info.bandwidth == peak + audio_peak
        assert info.average_bandwidth == average + audio_average
        assert info.bandwidth >= info.average_bandwidth > 0


def test_the_codecs_string_describes_the_stream(packaged):
    for name, facts in packaged.facts.items():
        stream = ffprobe_json(["-select_streams", "v:0", "-show_streams", str(packaged.staged.merged[name])])["streams"][0]
        profile_idc = int(facts.codec[5:7], 16)
        level_idc = int(facts.codec[9:11], 16)
        assert profile_idc == {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100}[stream["profile"]]
        assert level_idc == int(stream["level"])


def test_the_hls_ladder_decodes_without_errors(packaged):
    result = run_ffmpeg(
        ["-v", "error", "-protocol_whitelist", "file", "-i", str(packaged.master), "-map", "0", "-f", "null", "-"]
    )
    assert result.stderr.strip() == ""


# --- DASH ----------------------------------------------------------------------------------


def test_the_mpd_parses_and_lists_every_representation(packaged):
    staged = packaged.staged
    mpd = MPEGDASHParser.parse(str(packaged.dash / package.DASH_MANIFEST))
    assert mpd.type == "static"
    (period,) = mpd.periods
    video = [a for a in period.adaptation_sets if a.content_type == "video"]
    audio = [a for a in period.adaptation_sets if a.content_type == "audio"]
    assert len(video) == 1 and len(audio) == 1
    representations = video[0].representations
    assert [(r.width, r.height) for r in representations] == [
        (r.width, r.height) for r in staged.plan.renditions
    ]
    for representation in representations:
        assert representation.codecs.startswith("avc1.") and representation.bandwidth > 0
    assert audio[0].representations[0].codecs == "mp4a.40.2"
    for index in range(len(representations) + 1):
        assert (packaged.dash / f"init-{index}.m4s").exists()
        assert len(list(packaged.dash.glob(f"segment-{index}-*.m4s"))) >= 3


# --- measurements --------------------------------------------------------------------------


def test_playlist_bandwidth_on_a_handmade_playlist(tmp_path):
    (tmp_path / "a.m4s").write_bytes(b"\0" * 1000)  # 8000 bits over 2 s: 4000 b/s
    (tmp_path / "b.m4s").write_bytes(b"\0" * 3000)  # 24000 bits over 1 s: 24000 b/s
    (tmp_path / "c.m4s").write_bytes(b"\0" * 10)  # 80 bits over 0.5 s: 160 b/s
    playlist = tmp_path / "playlist.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n"
        "#EXTINF:2.000000,\na.m4s\n#EXTINF:1.0,\nb.m4s\n#EXTINF:0.5,\nc.m4s\n#EXT-X-ENDLIST\n"
    )
    peak, average = package.playlist_bandwidth(playlist)
    assert peak == 24000
    assert average == 9166  # 32080 bits over 3.5 s, rounded up


def test_playlist_bandwidth_of_an_empty_playlist_is_zero(tmp_path):
    playlist = tmp_path / "playlist.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    assert package.playlist_bandwidth(playlist) == (0, 0)


def test_measure_video_facts(staged):
    for rendition in staged.plan.renditions:
        path = staged.merged[rendition.name]
        facts = package.measure(path)
        assert facts.frames == staged.info.video.frames
        assert facts.duration_s == pytest.approx(staged.info.duration_s, abs=1 / staged.info.video.fps)
        assert facts.start_s == pytest.approx(0.0, abs=1e-3)
        assert facts.size_bytes == path.stat().st_size
        assert facts.codec.startswith("avc1.") and len(facts.codec) == len("avc1.42c015")
        assert facts.bitrate_kbps == pytest.approx(facts.size_bytes * 8 / 1000 / facts.duration_s)


def test_measure_audio_facts_match_what_a_player_plays(staged):
    """The AAC encoder's priming frame (1024 samples, before 0 and cut by the edit list)
    is not part of the audio: the track starts at 0 and lasts what ffprobe says."""
    facts = package.measure(staged.audio, "a")
    stream = ffprobe_json(["-select_streams", "a:0", "-show_streams", str(staged.audio)])["streams"][0]
    assert facts.codec == "mp4a.40.2"
    assert facts.size_bytes == staged.audio.stat().st_size
    assert facts.start_s == pytest.approx(float(stream["start_time"]), abs=1e-3)
    assert facts.duration_s == pytest.approx(float(stream["duration"]), abs=1e-3)
    assert facts.duration_s == pytest.approx(staged.info.duration_s, abs=0.05)


def test_bitrate_of_nothing_is_zero():
    assert package.MediaFacts(0, 0.0, 100, "avc1.640028", 0.0).bitrate_kbps == 0.0
