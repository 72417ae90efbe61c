"""Quality of every rung, measured in the encoders: VMAF (v0.6.1), PSNR-Y and SSIM against the
source at its display size (each rung scaled up to it, as VMAF's own practice).

Sampling, to keep the cost a fraction of the encode's: the encode's own decoded, upright source
frames are tapped in runs of three consecutive frames, one run every `period` frames
(`reference_filter`), and written raw to the chunk's scratch folder; the scorer then takes the
same frames of each rung, and only the middle frame of each run counts. VMAF's motion feature
compares a frame with its previous and its next one, so the middle frame of a run scores
exactly what an unsampled run gives that frame (measured: equal to the last digit).

The scorer is a second ffmpeg with libvmaf (the main build has none): see `tools.vmaf_binary`.
It reads only vtp's own files (the raw reference and the rungs' MP4s), never the upload.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import StageFigures
from vtp.core.plan import Rendition
from vtp.core.probe import SourceInfo
from vtp.core.tools import FfmpegFailed, run_scorer

RUN = 3  # consecutive frames per sample: the middle one is scored
SCORE_TIME_BASE = "1/25"  # both inputs share it before the frames are paired


def sampling_period(info: SourceInfo, config: PipelineConfig) -> int:
    """Frames between the starts of two sampled runs, the same for every chunk of a job: as many
    runs as `quality_samples` asks for, within the configured periods; 0: no scoring. A period
    of RUN scores every frame."""
    if config.quality_samples <= 0:
        return 0
    frames = max(1, round(info.duration_s * max(info.video.fps, 1.0)))
    return max(RUN, config.quality_min_period, min(config.quality_max_period, frames // config.quality_samples))


def sample_expression(period: int) -> str:
    """select's expression: the first RUN frames of every `period` (n counts the chunk's frames)."""
    return f"lt(mod(n,{period}),{RUN})"


def sampling_note(period: int) -> str:
    what = "VMAF v0.6.1, PSNR-Y and SSIM at the source's display size"
    if period <= RUN:
        return f"{what}, every frame"
    return f"{what}, on the middle frame of 3 consecutive frames every {period} frames"


@dataclass(frozen=True)
class RungScores:
    """The scored (middle) frames of one rung in one chunk."""

    vmaf: tuple[float, ...]
    psnr_y: tuple[float, ...]
    ssim: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"vmaf": [round(v, 3) for v in self.vmaf], "psnr_y": [round(v, 3) for v in self.psnr_y],
                "ssim": [round(v, 5) for v in self.ssim]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RungScores":
        return cls(tuple(data["vmaf"]), tuple(data["psnr_y"]), tuple(data["ssim"]))


def score_chunk(
    reference: Path, rungs: dict[str, Path], renditions: tuple[Rendition, ...], info: SourceInfo,
    period: int, scratch: Path,
) -> tuple[dict[str, RungScores], StageFigures]:
    """Score each rung's file against the sampled reference; one scorer process for all rungs."""
    width, height = info.video.display_width, info.video.display_height
    sample = sample_expression(period).replace(",", "\\,")
    graph, outputs = [f"[0:v]split={len(renditions)}" + "".join(f"[ref{i}]" for i in range(len(renditions)))], []
    for i, rendition in enumerate(renditions):
        log = scratch / f"vmaf_{rendition.name}.json"
        graph.append(
            f"[{i + 1}:v]select={sample},scale={width}:{height}:flags=bicubic,format=yuv420p,setsar=1,"
            f"settb={SCORE_TIME_BASE},setpts=N[dist{i}]"
        )
        graph.append(f"[ref{i}]setsar=1,settb={SCORE_TIME_BASE},setpts=N[refn{i}]")
        graph.append(
            f"[dist{i}][refn{i}]libvmaf=log_fmt=json:log_path='{_filter_path(log)}':n_threads=1:"
            f"feature='name=psnr|name=float_ssim'[out{i}]"
        )
        outputs += ["-map", f"[out{i}]", "-f", "null", "-"]
    args = ["-loglevel", "error", "-i", str(reference)]
    for rendition in renditions:
        args += ["-i", str(rungs[rendition.name])]
    args += ["-filter_complex", ";".join(graph), *outputs]
    try:
        result = run_scorer(args)
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash("scoring the rungs' quality") from None
        raise PipelineError(ErrorCode.ENCODE_FAILED, f"scoring the rungs' quality failed: {failure}") from None
    scores = {r.name: _scored(scratch / f"vmaf_{r.name}.json", period) for r in renditions}
    figures = StageFigures(wall_s=result.stats.wall_s, cpu_s=result.stats.cpu_s, max_rss_mb=result.stats.max_rss_mb)
    return scores, figures


def _filter_path(path: Path) -> str:
    """A path inside a quoted filter option: quotes and backslashes escaped."""
    return str(path).replace("\\", "\\\\").replace("'", "'\\''").replace(":", "\\:")


def _scored(log: Path, period: int) -> RungScores:
    """The frames whose scores are exact: the middle of each run (its motion feature compares
    it with its true neighbours), or every frame where the runs touch."""
    frames = json.loads(log.read_text())["frames"]
    middle = [frame["metrics"] for index, frame in enumerate(frames) if period <= RUN or index % RUN == 1]
    return RungScores(
        tuple(m["vmaf"] for m in middle),
        tuple(_finite_psnr(m.get("psnr_y", math.inf)) for m in middle),
        tuple(m.get("float_ssim", 1.0) for m in middle),
    )


def _finite_psnr(value: float) -> float:
    """Identical frames have an infinite PSNR; libvmaf caps it at 60 dB for 8 bits, say so too."""
    return min(float(value), 60.0)


def rung_quality(per_chunk: list[RungScores], period: int) -> dict[str, Any] | None:
    """The rung over all chunks: VMAF mean and 5th percentile over the scored frames, the worst
    chunk's mean; PSNR-Y and SSIM means; how many frames were scored and how."""
    chunks = [scores for scores in per_chunk if scores.vmaf]
    vmaf = sorted(v for scores in chunks for v in scores.vmaf)
    if not vmaf:
        return None
    psnr = [p for scores in chunks for p in scores.psnr_y]
    ssim = [s for scores in chunks for s in scores.ssim]
    return {
        "vmaf_mean": round(sum(vmaf) / len(vmaf), 2),
        "vmaf_p5": round(_percentile(vmaf, 5), 2),
        "vmaf_worst_chunk": round(min(sum(s.vmaf) / len(s.vmaf) for s in chunks), 2),
        "psnr_db": round(sum(psnr) / len(psnr), 2),
        "ssim": round(sum(ssim) / len(ssim), 4),
        "frames_scored": len(vmaf),
        "sampling": sampling_note(period),
    }


def _percentile(ordered: list[float], percent: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
