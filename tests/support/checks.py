"""Correctness checks on a published job folder, shared by the local and LocalStack tests.

Each check measures the outputs with ffprobe/ffmpeg and parses the playlists with real
parser libraries; none trusts the manifest's own numbers.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import m3u8
from mpegdash.parser import MPEGDASHParser

from vtp.core.tools import ffprobe_json, run_ffmpeg

HLS_PROTOCOLS = "file"


def load_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def frame_times(path: Path, stream: str = "v:0") -> list[tuple[float, bool]]:
    """(pts seconds, is keyframe) of every packet, in presentation order."""
    packets = ffprobe_json(
        ["-protocol_whitelist", HLS_PROTOCOLS, "-select_streams", stream,
         "-show_entries", "packet=pts_time,duration_time,flags", str(path)]
    )["packets"]
    return sorted((float(p["pts_time"]), "K" in p.get("flags", "")) for p in packets)


def media_span(path: Path, stream: str) -> tuple[float, float]:
    """(start, end) in seconds: first pts, last pts plus its duration."""
    packets = ffprobe_json(
        ["-protocol_whitelist", HLS_PROTOCOLS, "-select_streams", stream,
         "-show_entries", "packet=pts_time,duration_time", str(path)]
    )["packets"]
    times = sorted((float(p["pts_time"]), float(p.get("duration_time") or 0)) for p in packets)
    return times[0][0], times[-1][0] + times[-1][1]


def segment_starts_with_keyframe(playlist: Path) -> list[str]:
    """Names of the segments of an fMP4 media playlist whose first frame is not a keyframe."""
    parsed = m3u8.load(str(playlist))
    init = playlist.parent / parsed.segment_map[0].uri
    offenders = []
    with tempfile.TemporaryDirectory() as scratch:
        for segment in parsed.segments:
            joined = Path(scratch) / "joined.mp4"
            joined.write_bytes(init.read_bytes() + (playlist.parent / segment.uri).read_bytes())
            packets = ffprobe_json(
                ["-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries", "packet=flags", str(joined)]
            )["packets"]
            if not packets or "K" not in packets[0]["flags"]:
                offenders.append(segment.uri)
    return offenders


def decode_errors(path: Path) -> str:
    """What ffmpeg says when it decodes every stream of `path` (empty when clean)."""
    result = run_ffmpeg(
        ["-v", "error", "-protocol_whitelist", HLS_PROTOCOLS, "-i", str(path), "-map", "0", "-f", "null", "-"]
    )
    return result.stderr.strip()


def check_job_outputs(
    folder: Path,
    *,
    source_frames: int,
    source_duration_s: float,
    has_audio: bool,
    fps: float,
    last_frame_s: float = 0.0,
) -> dict:
    """Assert the output contract and the correctness list of issue 2; return the manifest."""
    manifest = load_manifest(folder)
    assert manifest["status"] == "COMPLETE", manifest.get("error")
    for key in ("job_id", "source", "renditions", "chunks", "timings"):
        assert key in manifest, key
    for key in ("duration_s", "width", "height", "frame_rate", "frames", "has_audio"):
        assert key in manifest["source"], key
    for key in ("probe_s", "split_s", "encode_s", "merge_s", "package_s", "total_s"):
        assert key in manifest["timings"], key
    assert manifest["source"]["has_audio"] is has_audio
    frame_s = max(1.0 / fps, last_frame_s)  # "within one frame"; a VFR source's last frame may be longer

    master = m3u8.load(str(folder / "hls" / "master.m3u8"))
    assert master.is_variant
    assert len(master.playlists) == len(manifest["renditions"])
    for variant in master.playlists:
        info = variant.stream_info
        assert info.bandwidth > 0 and info.resolution and info.codecs.startswith("avc1.")
        if has_audio:
            assert "mp4a.40.2" in info.codecs and info.audio == "audio"
    if has_audio:
        assert [m.type for m in master.media] == ["AUDIO"]

    keyframes_by_rung = {}
    segments_by_rung = {}
    for rendition in manifest["renditions"]:
        for key in ("name", "width", "height", "codec", "target_bitrate_kbps", "measured_bitrate_kbps",
                    "frames", "duration_s", "size_bytes", "hls_playlist"):
            assert key in rendition, key
        playlist = folder / rendition["hls_playlist"]
        times = frame_times(playlist)
        assert len(times) == source_frames, f"{rendition['name']}: {len(times)} frames, source {source_frames}"
        start, end = media_span(playlist, "v:0")
        assert abs(start) < 1e-3, f"{rendition['name']} starts at {start}"
        assert abs((end - start) - source_duration_s) <= frame_s + 1e-3, (rendition["name"], end - start)
        keyframes_by_rung[rendition["name"]] = [round(t, 4) for t, key in times if key]
        media = m3u8.load(str(playlist))
        segments_by_rung[rendition["name"]] = [round(s.duration, 3) for s in media.segments]
        assert segment_starts_with_keyframe(playlist) == [], rendition["name"]
        assert decode_errors(playlist) == "", rendition["name"]
        stream = ffprobe_json(["-show_streams", "-select_streams", "v:0", "-protocol_whitelist", HLS_PROTOCOLS, str(playlist)])["streams"][0]
        assert (stream["width"], stream["height"]) == (rendition["width"], rendition["height"])
        assert stream["width"] % 2 == 0 and stream["height"] % 2 == 0

    first = next(iter(keyframes_by_rung.values()))
    for name, keyframes in keyframes_by_rung.items():
        assert keyframes == first, f"{name} keyframes differ from the top rung"
    first_segments = next(iter(segments_by_rung.values()))
    for name, segments in segments_by_rung.items():
        assert segments == first_segments, f"{name} segment boundaries differ"

    if has_audio:
        audio_playlist = folder / manifest["audio"]["hls_playlist"]
        audio_start, audio_end = media_span(audio_playlist, "a:0")
        assert abs(audio_start) <= 0.001 + 1e-6 or audio_start < 0.05, f"audio starts at {audio_start}"
        assert abs((audio_end - audio_start) - source_duration_s) <= 0.05, (audio_end - audio_start)
        assert decode_errors(audio_playlist) == ""

    mpd = MPEGDASHParser.parse(str(folder / "dash" / "manifest.mpd"))
    adaptation_sets = mpd.periods[0].adaptation_sets
    video_sets = [a for a in adaptation_sets if a.content_type == "video"]
    assert len(video_sets) == 1
    assert len(video_sets[0].representations) == len(manifest["renditions"])
    if has_audio:
        assert any(a.content_type == "audio" for a in adaptation_sets)
    assert decode_errors(folder / "dash" / "manifest.mpd") == ""

    thumbnails = folder / "thumbnails"
    assert (thumbnails / "poster.jpg").stat().st_size > 0
    vtt = (thumbnails / "thumbnails.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "#xywh=" in vtt
    assert list(thumbnails.glob("sprite_*.jpg"))
    return manifest


def check_against_source(folder: Path, info) -> dict:
    """check_job_outputs with the expectations taken from the source's probe (a SourceInfo)."""
    return check_job_outputs(
        folder,
        source_frames=info.video.frames,
        source_duration_s=info.duration_s,
        has_audio=info.has_audio,
        fps=info.video.fps,
        last_frame_s=info.video.last_frame_s,
    )
