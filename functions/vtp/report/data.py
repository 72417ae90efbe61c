"""What the report page shows, gathered from the manifest and the segments' sizes.

The page (page.py) embeds this dict as JSON; everything in it comes from the manifest except
the per-segment bit rates, which come from the encoders' results (a job being published) or
from the published media playlists and segment files (a local job's page written again).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vtp.core.encode import AUDIO_NAME, ChunkResult
from vtp.core.manifest import Manifest
from vtp.core.publish import MEDIA_PLAYLIST, timeline

Segments = dict[str, list[dict[str, Any]]]  # rung name -> [{start_s, duration_s, bytes, kbps}]


def build_report_data(manifest: Manifest, segments: Segments) -> dict[str, Any]:
    complete = manifest.status == "COMPLETE"
    outputs = manifest.outputs
    return {
        "job_id": manifest.job_id,
        "status": manifest.status,
        "input": manifest.input,
        "finished_at": manifest.finished_at,
        "where": manifest.where,
        "error": manifest.error,
        "failed_stage": manifest.failed_stage,
        "source": manifest.source,
        "player": {
            "hls": outputs.get("hls_master"),
            "dash": outputs.get("dash_manifest"),
            "thumbnails": outputs.get("thumbnails_vtt") or None,
            "poster": outputs.get("poster") or None,
        } if complete else None,
        "renditions": [
            {
                "name": r.name, "width": r.width, "height": r.height, "codec": r.codec, "codecs": r.codecs,
                "target_bitrate_kbps": r.target_bitrate_kbps, "measured_bitrate_kbps": r.measured_bitrate_kbps,
                "peak_bitrate_kbps": r.peak_bitrate_kbps, "size_bytes": r.size_bytes, "frames": r.frames,
                "duration_s": r.duration_s, "quality": r.quality, "segments": segments.get(r.name, []),
                "target_vmaf": r.target_vmaf, "maxrate_kbps": r.maxrate_kbps, "rate_factor": r.rate_factor,
            }
            for r in manifest.renditions
        ],
        "audio": {
            "codec": manifest.audio.codec, "bitrate_kbps": manifest.audio.bitrate_kbps,
            "measured_bitrate_kbps": manifest.audio.measured_bitrate_kbps, "channels": manifest.audio.channels,
            "sample_rate": manifest.audio.sample_rate, "size_bytes": manifest.audio.size_bytes,
        } if manifest.audio else None,
        "timeline": _timeline(manifest),
        "cost": manifest.cost,
    }


def _timeline(manifest: Manifest) -> dict[str, Any]:
    bars = [bar.to_dict() for bar in manifest.timeline.bars] if manifest.timeline else []
    for bar in bars:
        bar["retries"] = bar["attempt"]
    stages = manifest.stages
    return {
        "total_s": round(stages.total_s, 3) if stages else max((b["end_s"] for b in bars), default=0.0),
        "critical_path_s": round(stages.critical_path_s, 3) if stages else 0.0,
        "bars": bars,
    }


def segments_from_results(results: list[ChunkResult], names: list[str]) -> Segments:
    """Per rung, each segment's start, duration, size and bit rate, from the encoders' facts."""
    series: Segments = {}
    for name in names:
        if name == AUDIO_NAME:
            continue
        track = timeline(sorted(results, key=lambda r: r.index), name)
        series[name] = [
            _point(s.start / track.timescale, s.duration / track.timescale, s.bytes) for s in track.segments
        ]
    return series


def segments_from_folder(folder: Path, manifest: Manifest) -> Segments:
    """The same from a published local job: its media playlists and the segment files' sizes."""
    series: Segments = {}
    for rendition in manifest.renditions:
        playlist = folder / rendition.name / MEDIA_PLAYLIST
        if not playlist.is_file():
            continue
        points, start, duration = [], 0.0, None
        for line in playlist.read_text().splitlines():
            if line.startswith("#EXTINF:"):
                duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
            elif line and not line.startswith("#") and duration is not None:
                segment = folder / rendition.name / line
                points.append(_point(start, duration, segment.stat().st_size if segment.is_file() else 0))
                start += duration
                duration = None
        series[rendition.name] = points
    return series


def _point(start_s: float, duration_s: float, size: int) -> dict[str, Any]:
    kbps = size * 8 / duration_s / 1000 if duration_s > 0 else 0.0
    return {"start_s": round(start_s, 6), "duration_s": round(duration_s, 6), "bytes": size,
            "kbps": round(kbps, 1) if math.isfinite(kbps) else 0.0}
