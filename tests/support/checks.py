"""Correctness checks on a published job folder, shared by the local and LocalStack tests.

Each check measures the outputs: the playlists are parsed with `m3u8` and `mpegdash`,
each rendition is joined from its init segment and the files its playlist names and then
read with ffprobe (frames, keyframes) and ffmpeg (a clean decode). Presentation times are
read from the segments' own boxes (`tfdt` + signed `trun` offsets): ffmpeg's MP4 demuxer
shifts timestamps of fragments with negative composition offsets, players do not.
None of the checks trusts the manifest's own numbers.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import m3u8
from mpegdash.parser import MPEGDASHParser

from vtp.core import fmp4
from vtp.core.tools import ffprobe_json, run_ffmpeg


def load_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@dataclass
class Rendition:
    """A rendition as its playlist describes it, joined into one file for measuring."""

    playlist: Path
    segments: list[str]
    extinf: list[float]
    joined: Path
    track: fmp4.Track

    @property
    def times(self) -> list[float]:
        """Presentation time of every frame, in order."""
        return sorted(s.presentation / self.track.timescale for s in self.track.samples)

    @property
    def keyframes(self) -> list[float]:
        return sorted(s.presentation / self.track.timescale for s in self.track.samples if s.sync)

    @property
    def segment_starts(self) -> list[float]:
        return [f.first_presentation / self.track.timescale for f in _segment_first_fragments(self)]

    @property
    def end(self) -> float:
        return max((s.presentation + s.duration) / self.track.timescale for s in self.track.samples)


def _segment_first_fragments(rendition: Rendition) -> list[fmp4.Fragment]:
    starts = []
    offset = len(rendition.track.init)
    for name in rendition.segments:
        size = (rendition.playlist.parent / name).stat().st_size
        starts.append(next(f for f in rendition.track.fragments if f.start == offset))
        offset += size
    return starts


def join_rendition(playlist: Path, scratch: Path) -> Rendition:
    parsed = m3u8.load(str(playlist))
    assert parsed.is_endlist and parsed.playlist_type == "vod"
    assert parsed.segment_map, f"{playlist}: no EXT-X-MAP"
    init = playlist.parent / parsed.segment_map[0].uri
    names = [segment.uri for segment in parsed.segments]
    for segment in parsed.segments:
        assert round(segment.duration) <= parsed.target_duration, (playlist, segment.duration)
    joined = scratch / (playlist.parent.name + ".mp4")
    with joined.open("wb") as out:
        out.write(init.read_bytes())
        for name in names:
            out.write((playlist.parent / name).read_bytes())
    return Rendition(playlist, names, [s.duration for s in parsed.segments], joined, fmp4.read_track(joined))


def decode_errors(path: Path, *extra: str) -> str:
    """What ffmpeg says when it decodes every stream of `path` (empty when clean)."""
    result = run_ffmpeg(["-v", "error", *extra, "-i", str(path), "-map", "0", "-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-f", "null", "-"])
    return result.stderr.strip()


def source_frame_times(source: Path) -> list[float]:
    """Every frame a decoder gives for the source, on the output timeline (first frame at 0)."""
    # genpts: MPEG-PS leaves the last frame's timestamp out; ffmpeg (and so vtp) infers it.
    frames = ffprobe_json(
        ["-fflags", "+genpts", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time", str(source)],
        timeout_s=600,
    )["frames"]
    times = sorted(float(f["best_effort_timestamp_time"]) for f in frames if f.get("best_effort_timestamp_time") not in (None, "N/A"))
    return [t - times[0] for t in times]


def dash_files(mpd_path: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Representation id -> [(file, start, duration)] as the MPD's SegmentTimeline addresses them."""
    mpd = MPEGDASHParser.parse(str(mpd_path))
    files: dict[str, list[tuple[str, int, int]]] = {}
    for adaptation in mpd.periods[0].adaptation_sets:
        template = adaptation.segment_templates[0]
        entries = []
        time = 0
        for s in template.segment_timelines[0].Ss:
            if s.t is not None:
                time = s.t
            for _ in range((s.r or 0) + 1):
                entries.append((time, s.d))
                time += s.d
        for representation in adaptation.representations:
            media = template.media.replace("$RepresentationID$", representation.id)
            files[representation.id] = [(media.replace("$Time$", str(t)), t, d) for t, d in entries]
            assert (mpd_path.parent / template.initialization.replace("$RepresentationID$", representation.id)).is_file()
    return files


def check_job_outputs(folder: Path, source: Path, *, has_audio: bool, frame_s: float) -> dict:
    """Assert the output contract on a COMPLETE job folder; return the manifest."""
    manifest = load_manifest(folder)
    assert manifest["status"] == "COMPLETE", manifest.get("error")
    for key in ("job_id", "source", "renditions", "chunks", "stages", "outputs"):
        assert key in manifest, key
    stages = manifest["stages"]
    for key in ("split", "encode", "merge"):
        for figure in ("wall_s", "bytes_read", "bytes_written", "requests"):
            section = stages[key]["sum"] if key == "encode" else stages[key]
            assert figure in section, (key, figure)
    assert stages["critical_path_s"] > 0
    assert manifest["source"]["has_audio"] is has_audio
    expected = source_frame_times(source)
    duration = manifest["source"]["duration_s"]
    # The output ends where the source's last frame ends (its own duration is the container's).
    assert expected[-1] < duration <= expected[-1] + 2 * frame_s + 1e-3, (expected[-1], duration)

    master = m3u8.load(str(folder / manifest["outputs"]["hls_master"]))
    assert master.is_variant and len(master.playlists) == len(manifest["renditions"])
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        renditions = {}
        for variant, entry in zip(master.playlists, manifest["renditions"]):
            info = variant.stream_info
            assert info.codecs.startswith("avc1.") and info.resolution == (entry["width"], entry["height"])
            assert ("mp4a.40.2" in info.codecs) is has_audio
            rendition = join_rendition(folder / variant.uri, scratch)
            renditions[entry["name"]] = rendition
            name = entry["name"]
            # Every frame of the source, each at its time (within one tick of the source's time base).
            times = rendition.times
            assert len(times) == len(expected), f"{name}: {len(times)} frames, the source {len(expected)}"
            worst = max(abs(a - b) for a, b in zip(times, expected))
            assert worst < 1e-3, f"{name}: a frame is {worst:.6f} s from its source time"
            assert times[0] == 0, f"{name}: the first frame is at {times[0]}"
            # Segments: each starts with a keyframe, EXTINF matches the media, BANDWIDTH covers the peak.
            starts = rendition.segment_starts
            assert all(f.samples[0].sync for f in _segment_first_fragments(rendition)), name
            media_durations = [b - a for a, b in zip(starts, starts[1:])] + [rendition.end - starts[-1]]
            for extinf, measured in zip(rendition.extinf, media_durations):
                assert abs(extinf - measured) < 1e-3, (name, extinf, measured)
            sizes = [(folder / name / s).stat().st_size for s in rendition.segments]
            peak = max(8 * size / d for size, d in zip(sizes, rendition.extinf) if d > 0)
            assert info.bandwidth >= peak * 0.999, (name, info.bandwidth, peak)
            assert abs(rendition.end - duration) < 1e-3, (name, rendition.end, duration)
            probe = ffprobe_json(["-show_streams", "-select_streams", "v:0", str(rendition.joined)])["streams"][0]
            assert (probe["width"], probe["height"]) == (entry["width"], entry["height"])
            assert probe["width"] % 2 == 0 and probe["height"] % 2 == 0
            assert not probe.get("side_data_list"), f"{name} carries a display matrix: players would turn it again"
            assert decode_errors(rendition.joined) == "", name

        # Keyframes and segment boundaries are the same in every rung.
        first = next(iter(renditions.values()))
        for name, rendition in renditions.items():
            assert rendition.keyframes == first.keyframes, f"{name} keyframes differ"
            assert rendition.segment_starts == first.segment_starts, f"{name} segment boundaries differ"
            assert rendition.segments == first.segments

        # DASH addresses the very same files, with the same timeline.
        mpd = dash_files(folder / manifest["outputs"]["dash_manifest"])
        for name, rendition in renditions.items():
            assert [f for f, _, _ in mpd[name]] == [f"{name}/{s}" for s in rendition.segments], name
            scale = rendition.track.timescale
            assert [t / scale for _, t, _ in mpd[name]] == pytest_approx(rendition.segment_starts)

        if has_audio:
            audio = join_rendition(folder / manifest["audio"]["hls_playlist"], scratch)
            audio_times = audio.times
            assert audio_times[0] == 0, f"the audio starts at {audio_times[0]}"
            assert abs(audio.end - duration) <= 0.05 + frame_s, (audio.end, duration)
            packets = ffprobe_json(["-select_streams", "a:0", "-show_entries", "packet=flags", str(audio.joined)])["packets"]
            assert not any("D" in p["flags"] for p in packets), "the audio carries discarded (priming) packets"
            assert decode_errors(audio.joined) == ""
            assert [f for f, _, _ in mpd["audio"]] == [f"audio/{s}" for s in audio.segments]

    thumbnails = folder / "thumbnails"
    assert (folder / manifest["outputs"]["poster"]).stat().st_size > 0
    vtt = (folder / manifest["outputs"]["thumbnails_vtt"]).read_text()
    assert vtt.startswith("WEBVTT")
    cues = [line for line in vtt.splitlines() if "#xywh=" in line]
    assert cues, "no thumbnail cue"
    assert len(cues) == math.ceil(duration / 2.0 - 1e-4), (len(cues), duration)
    sprites: dict[str, dict] = {}  # each sprite read once (a long chunk's sprite holds many cues)
    for cue in cues:
        image, _, box = cue.partition("#xywh=")
        x, y, w, h = (int(v) for v in box.split(","))
        if image not in sprites:
            sprites[image] = ffprobe_json(["-show_streams", str(thumbnails / image)])["streams"][0]
        stream = sprites[image]
        assert x + w <= stream["width"] and y + h <= stream["height"], cue
    return manifest


def pytest_approx(values: list[float]):
    import pytest

    return pytest.approx(values, abs=1e-6)


def check_against_source(folder: Path, source: Path) -> dict:
    """check_job_outputs with the expectations read from the source itself."""
    streams = ffprobe_json(["-show_streams", str(source)])["streams"]
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    video = next(s for s in streams if s.get("codec_type") == "video")
    rate = video.get("avg_frame_rate") or video.get("r_frame_rate") or "25/1"
    numerator, denominator = (int(v) for v in rate.split("/"))
    frame_s = denominator / numerator if numerator else 0.04
    return check_job_outputs(folder, source, has_audio=has_audio, frame_s=frame_s)
