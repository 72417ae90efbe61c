"""Quality of every rung, measured in the encoders: VMAF (v0.6.1), PSNR-Y and SSIM against the
source at its display size (each rung scaled up to it, as VMAF's own practice).

Sampling, to keep the cost a fraction of the encode's: runs of 3 consecutive frames, one run in
one segment in every `stride` (`sampling_stride`), at a place in the segment that varies from
run to run (`sample_times`: quality falls along a GOP, so runs only at keyframes would read
high). The reference is the encode's own decoded, upright source frames, tapped in the
encoding process and written raw to the chunk's scratch folder; each rung is read back from
the keyframe before each run, so scoring decodes at most a GOP per run, not the rung. Only the middle frame of each run counts: VMAF's motion feature compares a
frame with its previous and its next one, so the middle frame scores exactly what an
unsampled run gives that frame (checked by tests/unit/test_quality.py).

The scorer is a second ffmpeg with libvmaf (the main build has none): see `tools.vmaf_binary`.
It reads only vtp's own files (the raw reference and the rungs' MP4s), never the upload.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import StageFigures
from vtp.core.plan import BOUNDARY_EPSILON_S, Chunk, Rendition, short_tail_s
from vtp.core.probe import SourceInfo
from vtp.core.tools import FfmpegFailed, ff, run_scorer

RUN = 3  # consecutive frames per sample: the middle one is scored
SCORE_TIME_BASE = "1/25"  # both inputs share it before the frames are paired


def sampling_stride(info: SourceInfo, config: PipelineConfig) -> int:
    """One segment in so many is sampled, the same for every chunk of a job; 0: no scoring."""
    if config.quality_samples <= 0:
        return 0
    segments = max(1, math.ceil(info.duration_s / config.segment_s - 1e-9))
    return max(1, min(config.quality_max_stride, segments // config.quality_samples))


# Where in its segment each sampled run starts: the fractional parts of multiples of the golden
# ratio, so that the runs of a title spread evenly over every place in a GOP (quality falls
# along a GOP's chain of predicted frames: runs only at keyframes read high, by 6 to 10 VMAF
# on the lower rungs of the Big Buck Bunny sample).
GOLDEN = 0.6180339887498949


def sample_times(chunk: Chunk, info: SourceInfo, config: PipelineConfig) -> tuple[float, ...]:
    """Where (on the output timeline) this chunk's sampled runs of 3 frames start: one in each
    sampled segment, at a place in it that varies from segment to segment, with room for 3
    frames before the chunk ends."""
    stride = sampling_stride(info, config)
    if not stride or info.video.fps < 1.0:
        return ()  # below a frame a second, 3 frames would span several segments: not scored
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    room = (RUN + 1) / max(info.video.fps, 1.0)
    if chunk.end_s is None:
        room = max(room, short_tail_s(config))  # no segment starts in the video's last moment
    first = math.ceil(chunk.start_s / config.segment_s - 1e-9)
    times = []
    index = first
    while index * config.segment_s < end - room:
        if index % stride == 0:
            place = (index * GOLDEN) % 1.0 * config.segment_s
            times.append(round(min(index * config.segment_s + place, end - room), 6))
        index += 1
    return tuple(times)


def sampling_note(stride: int, config: PipelineConfig) -> str:
    every = "every segment" if stride == 1 else f"one segment in {stride}"
    return (f"VMAF v0.6.1, PSNR-Y and SSIM at the source's display size, on the middle of 3 consecutive frames "
            f"at a varying place in {every} ({stride * config.segment_s:g} s)")


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


def reference_chain(stream, times: tuple[float, ...], info: SourceInfo):
    """The scorer's reference, from the encode's upright frames: the first 3 frames at or after
    each sample time, one after the other, at the display size (ffmpeg-python nodes)."""
    copies = stream.filter_multi_output("split", len(times))
    parts = [
        copies[i].filter("trim", start=f"{t - BOUNDARY_EPSILON_S:.6f}").filter("trim", end_frame=RUN)
        .filter("setpts", "PTS-STARTPTS")  # each run from 0: concat puts them one after the other
        for i, t in enumerate(times)
    ]
    joined = parts[0] if len(parts) == 1 else ff.concat(*parts, v=1, a=0)
    return (
        joined.filter("scale", info.video.display_width, info.video.display_height, flags="bicubic")
        .filter("format", "yuv420p")
        .filter("setsar", 1)
    )


def score_chunk(
    reference: Path, rungs: dict[str, Path], renditions: tuple[Rendition, ...], info: SourceInfo,
    runs: tuple[float, ...], scratch: Path,
) -> tuple[dict[str, RungScores], StageFigures]:
    """Score each rung against the reference; `runs`: where each sampled run's first frame is,
    in seconds from the chunk's first frame. One scorer process for all rungs."""
    width, height = info.video.display_width, info.video.display_height
    fps = max(info.video.fps, 1.0)
    references = ff.input(str(reference), threads=1)["0"].filter_multi_output("split", len(renditions))
    outputs = []
    for i, rendition in enumerate(renditions):
        parts = [
            # Decoding starts at the keyframe before the run (a seek) and stops after it; frames
            # before the run are decoded, not kept. -ss counts from the file's first frame; a
            # quarter frame before the run's first, so that rounding cannot drop it.
            ff.input(str(rungs[rendition.name]), t=f"{max(1.0, (RUN + 1) / fps):.3f}", threads=1,
                     **({"ss": f"{start - 0.25 / fps:.6f}"} if start > 0.25 / fps else {}))["0"]
            .filter("trim", end_frame=RUN).filter("setpts", "PTS-STARTPTS")
            for start in runs
        ]
        joined = parts[0] if len(parts) == 1 else ff.concat(*parts, v=1, a=0)
        distorted = (
            joined.filter("scale", width, height, flags="bicubic").filter("format", "yuv420p").filter("setsar", 1)
            .filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
        )
        paired = references[i].filter("setsar", 1).filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
        scored = ff.filter([distorted, paired], "libvmaf", log_fmt="json", log_path=str(scratch / f"vmaf_{rendition.name}.json"),
                           n_threads=1, feature="name=psnr|name=float_ssim")
        outputs.append(ff.output(scored, "-", f="null"))
    # One thread per decoder and filter: each decodes at most a GOP, where threads cost more than they give.
    args = ff.merge_outputs(*outputs).global_args("-loglevel", "error", "-filter_threads", "1").get_args()
    try:
        result = run_scorer(args)
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash("scoring the rungs' quality") from None
        raise PipelineError(ErrorCode.ENCODE_FAILED, f"scoring the rungs' quality failed: {failure}") from None
    scores = {r.name: _scored(scratch / f"vmaf_{r.name}.json", len(runs)) for r in renditions}
    figures = StageFigures(wall_s=result.stats.wall_s, cpu_s=result.stats.cpu_s, max_rss_mb=result.stats.max_rss_mb)
    return scores, figures


def _scored(log: Path, runs: int) -> RungScores:
    """The middle frame of each run (its motion feature sees its true neighbours)."""
    frames = json.loads(log.read_text())["frames"]
    if len(frames) != RUN * runs:
        # A run shorter than 3 frames (a hole in a VFR source right at a segment start) would pair
        # the wrong frames from there on: score nothing rather than something wrong.
        return RungScores((), (), ())
    middle = [frame["metrics"] for index, frame in enumerate(frames) if index % RUN == 1]
    return RungScores(
        tuple(m["vmaf"] for m in middle),
        tuple(_finite_psnr(m.get("psnr_y", math.inf)) for m in middle),
        tuple(m.get("float_ssim", 1.0) for m in middle),
    )


def _finite_psnr(value: float) -> float:
    """Identical frames have an infinite PSNR; libvmaf caps it at 60 dB for 8 bits, so do we."""
    return min(float(value), 60.0)


def rung_quality(per_chunk: list[RungScores], note: str) -> dict[str, Any] | None:
    """The rung over all chunks: VMAF mean (and its standard error) and 5th percentile over the
    scored frames, the worst chunk's mean; PSNR-Y and SSIM means; how many frames were scored
    and how."""
    chunks = [scores for scores in per_chunk if scores.vmaf]
    vmaf = sorted(v for scores in chunks for v in scores.vmaf)
    if not vmaf:
        return None
    psnr = [p for scores in chunks for p in scores.psnr_y]
    ssim = [s for scores in chunks for s in scores.ssim]
    return {
        "vmaf_mean": round(sum(vmaf) / len(vmaf), 2),
        # The standard error of that mean from the sampling: a short title has few frames scored.
        "vmaf_error": round(statistics.stdev(vmaf) / math.sqrt(len(vmaf)), 2) if len(vmaf) > 1 else None,
        # statistics' "inclusive" method: linear between the closest ranks (numpy's default).
        "vmaf_p5": round(statistics.quantiles(vmaf, n=20, method="inclusive")[0] if len(vmaf) > 1 else vmaf[0], 2),
        "vmaf_worst_chunk": round(min(sum(s.vmaf) / len(s.vmaf) for s in chunks), 2),
        "psnr_db": round(sum(psnr) / len(psnr), 2),
        "ssim": round(sum(ssim) / len(ssim), 4),
        "frames_scored": len(vmaf),
        "sampling": note,
    }
