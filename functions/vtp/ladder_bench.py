"""`vtp bench INPUT --ladder compare`: the fitted ladder against the fixed one, on one title.

The pipeline runs twice on the title (`run_job`): the fixed ladder, then the fitted one. Then
every published rung of both is measured on its own, not from the pipeline's sampled scores:

- bytes, average and peak (highest segment) bit rate: from the job's manifest;
- VMAF (v0.6.1, mean and 5th percentile over the scored frames) and PSNR-Y: against the
  source over the whole rung, at the source's display size (the rung scaled up bicubic, as
  `vtp.core.quality` does). The rung is its published CMAF (init segment and media segments,
  joined into one fragmented MP4, since the scorer reads only MP4s); the reference is the
  source decoded by the main ffmpeg (turned upright, deinterlaced, as the encoders see it) and
  streamed raw to the scorer through a FIFO, so that the scorer, which crashes on MPEG-TS,
  never reads the upload, and no decoded copy of the title is written to disk. Frames are
  paired in order.

libvmaf's `n_subsample` N scores VMAF's spatial features and PSNR on every Nth frame (VMAF's
motion feature still sees every frame, so the scored frames get exactly the score they get
without subsampling; libvmaf's own pooled mean is wrong then, so the means are taken here,
from the frames). N is 1 where the title is short, otherwise the smallest odd number that keeps
the scored pixels within `SCORED_MEGAPIXELS` (odd: x264's B-frame pattern has a period of up to
4 frames, and an even N would score mostly one kind of frame; measured on the grainy clip: N=4
put a 720p rung at 91.2 against 87.8 over every frame, N=5 at 87.3). Measured here, a 1080p rung
costs about 110 ms of CPU per frame scored in full and 14 ms per frame only decoded, scaled up
and fed to the motion feature, and decoding the reference 16 ms a frame (once per scorer); the
rungs are shared among `workers` scorers (at most), each with its own reference. A 60 s 1080p30
title with 8 rungs (30,000 MP) gets N = 9: about 430 CPU-s, some 3.5 minutes on 2 cores (an
estimate from those costs: 5 rungs of 4 s at N = 7 took 18.9 CPU-s).

Then: the total bytes of the two ladders, the BD-rate of the fitted ladder against the fixed one
on (log bit rate, VMAF), the analysis' CPU as a share of the encode's, and for each fixed rung
the fitted rung of the same size, if any.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vtp.core import stages
from vtp.core.config import LadderMode, PipelineConfig
from vtp.core.encode import picture_chain
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import Manifest, RenditionEntry
from vtp.core.probe import SourceInfo
from vtp.core.source import Source, local_source
from vtp.core.tools import FfmpegFailed, ff, run_ffmpeg, run_scorer, vmaf_binary
from vtp.local.runner import default_workers, run_job

MODEL = "vmaf_v0.6.1"
# Pixels scored in full per title (frames x display pixels over every rung of both ladders),
# in millions: a 60 s 1080p30 title with 8 rungs (30,000 MP) gets N = 9 (3,300 MP).
SCORED_MEGAPIXELS = 4000.0
PSNR_CAP_DB = 60.0  # identical frames: libvmaf caps PSNR at 60 dB for 8 bits, as vtp.core.quality does
SCORE_TIME_BASE = "1/25"  # both inputs share it before the frames are paired in order


@dataclass(frozen=True)
class RungFigures:
    """One published rung, measured on its own."""

    ladder: str  # "fixed" or "auto"
    name: str
    width: int
    height: int
    size_bytes: int
    kbps: float  # average over the rung (manifest)
    peak_kbps: float  # the highest segment's (manifest)
    vmaf_mean: float
    vmaf_p5: float
    psnr_y_db: float
    frames: int  # the rung's frames (manifest)
    frames_scored: int
    target_vmaf: float | None  # a fitted rung's target; None for the fixed ladder's
    pipeline_vmaf: float | None  # the pipeline's own (sampled) VMAF mean, for comparison

    @property
    def peak_ratio(self) -> float:
        return self.peak_kbps / self.kbps if self.kbps else 0.0

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_ratio": round(self.peak_ratio, 3)}


@dataclass
class LadderJob:
    """One of the two pipeline runs."""

    mode: str
    job_id: str
    folder: Path
    manifest: Manifest
    wall_s: float
    quality_cpu_s: float  # the encoders' own quality scoring (part of the encode's CPU)
    rungs: list[RungFigures] = field(default_factory=list)

    @property
    def encode_cpu_s(self) -> float:
        stages_ = self.manifest.stages
        return stages_.encode.sum.cpu_s if stages_ and stages_.encode else 0.0

    @property
    def analysis_cpu_s(self) -> float:
        stages_ = self.manifest.stages
        return stages_.analyse.sum.cpu_s if stages_ and stages_.analyse else 0.0

    @property
    def rework_cpu_s(self) -> float:
        stages_ = self.manifest.stages
        return stages_.rework.sum.cpu_s if stages_ and stages_.rework else 0.0

    @property
    def total_bytes(self) -> int:
        return sum(r.size_bytes for r in self.rungs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "wall_s": round(self.wall_s, 2), "total_bytes": self.total_bytes,
            "encode_cpu_s": round(self.encode_cpu_s, 2), "analysis_cpu_s": round(self.analysis_cpu_s, 2),
            "rework_cpu_s": round(self.rework_cpu_s, 2),
            "encoder_quality_cpu_s": round(self.quality_cpu_s, 2), "rungs": [r.to_dict() for r in self.rungs],
        }


# --- Bjontegaard delta rate --------------------------------------------------------------------


def rd_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (rate, quality) points on the ladder's rate-quality frontier, by rate: a point that
    costs more than another without a higher quality is left out (the BD fit needs quality to
    grow with rate)."""
    kept: list[tuple[float, float]] = []
    for rate, quality in sorted(points):
        if rate > 0 and math.isfinite(quality) and (not kept or quality > kept[-1][1]):
            kept.append((rate, quality))
    return kept


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjontegaard delta rate of `test` against `anchor`, in percent (negative: `test` needs
    fewer bits for the same quality). Points are (bit rate, quality). Each curve is log(rate)
    as a polynomial of quality, fitted by least squares, cubic where it has 4 points or more
    (else of one degree less than its points), each integrated over the quality range both
    curves cover; the result is exp(mean difference) - 1. None where a curve has fewer than 2
    points or the ranges do not overlap."""
    import numpy as np

    curves = [rd_frontier(points) for points in (anchor, test)]
    if any(len(curve) < 2 for curve in curves):
        return None
    low = max(min(q for _, q in curve) for curve in curves)
    high = min(max(q for _, q in curve) for curve in curves)
    if not high > low:
        return None
    integrals = []
    for curve in curves:
        quality = np.array([q for _, q in curve], dtype=float)
        log_rate = np.log(np.array([r for r, _ in curve], dtype=float))
        fit = np.polynomial.Polynomial.fit(quality, log_rate, deg=min(3, len(curve) - 1))
        integral = fit.integ()
        integrals.append(float(integral(high) - integral(low)))
    mean_difference = (integrals[1] - integrals[0]) / (high - low)
    return float(math.expm1(mean_difference) * 100.0)


# --- scoring -----------------------------------------------------------------------------------


def choose_subsample(frames: int, rungs: int, width: int, height: int, budget_mp: float = SCORED_MEGAPIXELS) -> int:
    """libvmaf's n_subsample: 1 where every frame fits the budget, else the smallest odd N that does."""
    total_mp = frames * rungs * width * height / 1e6
    if total_mp <= budget_mp:
        return 1
    n = math.ceil(total_mp / budget_mp)
    return n if n % 2 else n + 1


def rung_file(folder: Path, entry: RenditionEntry, dest: Path) -> Path:
    """The published rung as one fragmented MP4: its init segment, then its media segments in
    the playlist's order."""
    playlist = folder / entry.hls_playlist
    parts = []
    for line in playlist.read_text().splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:"):
            parts.insert(0, line.split('URI="', 1)[1].split('"', 1)[0])
        elif line and not line.startswith("#"):
            parts.append(line)
    with open(dest, "wb") as out:
        for part in parts:
            with open(playlist.parent / part, "rb") as piece:
                while block := piece.read(1 << 20):
                    out.write(block)
    return dest


def _reference_args(source: Source, info: SourceInfo, fifo: Path) -> list[str]:
    """The main ffmpeg: the source's frames, upright, at the display size, raw into `fifo`."""
    video = ff.input(source.url, **source.input_options(), noautorotate=None)[str(info.video.stream_index)]
    picture = (
        picture_chain(video, info)
        .filter("scale", info.video.display_width, info.video.display_height, flags="bicubic")
        .filter("format", "yuv420p")
        .filter("setsar", 1)
    )
    output = ff.output(picture, str(fifo), f="nut", fps_mode="passthrough", **{"c:v": "rawvideo"})
    return output.global_args("-loglevel", "error").get_args()


def _scorer_args(fifo: Path, rungs: list[Path], logs: list[Path], info: SourceInfo, subsample: int) -> list[str]:
    width, height = info.video.display_width, info.video.display_height
    references = ff.input(str(fifo), f="nut")["0"]
    references = references.filter_multi_output("split", len(rungs)) if len(rungs) > 1 else None
    outputs = []
    for i, (rung, log) in enumerate(zip(rungs, logs)):
        distorted = (
            ff.input(str(rung))["0"]
            .filter("scale", width, height, flags="bicubic").filter("format", "yuv420p").filter("setsar", 1)
            .filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
        )
        reference = (references[i] if references is not None else ff.input(str(fifo), f="nut")["0"])
        reference = reference.filter("setsar", 1).filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
        scored = ff.filter([distorted, reference], "libvmaf", model=f"version={MODEL}", log_fmt="json",
                           log_path=str(log), n_threads=1, n_subsample=subsample, feature="name=psnr")
        outputs.append(ff.output(scored, "-", f="null"))
    return ff.merge_outputs(*outputs).global_args("-loglevel", "error").get_args()


def _unblock(fifo: Path) -> None:
    """Open and close the FIFO at both ends, so that a process still waiting to open it (its
    other side failed before opening) goes on, to an empty stream or a broken pipe."""
    try:
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    except OSError:
        pass


@dataclass(frozen=True)
class Scores:
    vmaf: tuple[float, ...]
    psnr_y: tuple[float, ...]

    @property
    def vmaf_mean(self) -> float:
        return statistics.fmean(self.vmaf)

    @property
    def vmaf_p5(self) -> float:
        # statistics' "inclusive" method, as vtp.core.quality (numpy's default percentile).
        return statistics.quantiles(self.vmaf, n=20, method="inclusive")[0] if len(self.vmaf) > 1 else self.vmaf[0]

    @property
    def psnr_y_mean(self) -> float:
        return statistics.fmean(min(p, PSNR_CAP_DB) for p in self.psnr_y)


def _read_log(log: Path) -> Scores:
    frames = json.loads(log.read_text())["frames"]
    if not frames:
        raise PipelineError(ErrorCode.INTERNAL_ERROR, f"the scorer scored no frame ({log.name})")
    return Scores(tuple(f["metrics"]["vmaf"] for f in frames), tuple(f["metrics"]["psnr_y"] for f in frames))


def score_group(source: Source, info: SourceInfo, rungs: list[Path], scratch: Path, subsample: int,
                timeout_s: float) -> tuple[list[Scores], float]:
    """Score `rungs` against the source in one scorer process, fed by one reference decode.
    Returns the scores and the CPU seconds both processes spent."""
    scratch.mkdir(parents=True, exist_ok=True)
    fifo = scratch / "reference.fifo"
    os.mkfifo(fifo)
    logs = [scratch / f"vmaf_{i}.json" for i in range(len(rungs))]
    writer: dict[str, Any] = {}

    def write_reference() -> None:
        try:
            writer["result"] = run_ffmpeg(_reference_args(source, info, fifo), timeout_s=timeout_s)
        except BaseException as failure:  # noqa: BLE001 - reported below, after the scorer
            writer["error"] = failure
            _unblock(fifo)  # a scorer waiting to open the FIFO reads an empty stream and stops

    thread = threading.Thread(target=write_reference, name="reference", daemon=True)
    thread.start()
    try:
        scored = run_scorer(_scorer_args(fifo, rungs, logs, info, subsample), timeout_s=timeout_s)
    except FfmpegFailed as failure:
        _unblock(fifo)  # a writer still waiting to open the FIFO gets a broken pipe and stops
        thread.join()
        reference = f"; the reference's decoder: {writer['error']}" if "error" in writer else ""
        raise PipelineError(ErrorCode.INTERNAL_ERROR, f"scoring the rungs failed: {failure}{reference}") from None
    thread.join()
    if "error" in writer:
        # The scorer read the whole reference (it pairs every rung frame with one, repeating the
        # last where a rung is longer) unless the decoder stopped early.
        raise PipelineError(ErrorCode.INTERNAL_ERROR, f"decoding the reference failed: {writer['error']}")
    return [_read_log(log) for log in logs], scored.stats.cpu_s + writer["result"].stats.cpu_s


# --- the comparison ----------------------------------------------------------------------------


def _run_ladder(source: Path, out: Path, config: PipelineConfig, mode: LadderMode, workers: int) -> LadderJob:
    started = time.monotonic()
    result = run_job(source, out, config=config.with_changes(ladder_mode=mode), workers=workers)
    wall = time.monotonic() - started
    if result.error is not None:
        raise result.error
    if mode is LadderMode.AUTO and (result.manifest.ladder or {}).get("mode") != "auto":
        raise PipelineError(ErrorCode.INVALID_CONFIG, "the fitted ladder fell back to the fixed one (no quality scorer?)")
    quality_cpu = sum(r.quality_figures.cpu_s for r in result.results if r.quality_figures)
    return LadderJob(str(mode), result.job_id, result.folder, result.manifest, wall, quality_cpu)


def compare_ladders(source: Path, config: PipelineConfig, *, workers: int | None = None,
                    subsample: int | None = None, log=None) -> dict[str, Any]:
    """Run both ladders on `source`, measure every rung, and return the comparison (JSON-able)."""
    log = log or (lambda message: None)
    if vmaf_binary() is None:
        raise PipelineError(ErrorCode.FFMPEG_NOT_FOUND, "comparing ladders needs the quality scorer (ffmpeg-vmaf)")
    try:
        import numpy  # noqa: F401 - the BD-rate's fits; checked before minutes of encoding
    except ImportError:
        raise PipelineError(ErrorCode.INVALID_CONFIG, "comparing ladders needs numpy (pip install numpy; "
                                                      "the project's dev extras have it)") from None
    if subsample is not None and subsample < 1:
        raise PipelineError(ErrorCode.INVALID_CONFIG, f"the VMAF subsampling must be 1 or more, not {subsample}")
    workers = workers or default_workers()
    reader = local_source(source)
    info, _, _ = stages.inspect(reader, config)
    with tempfile.TemporaryDirectory(prefix="vtp-ladder-bench-") as scratch_name:
        scratch = Path(scratch_name)
        jobs = []
        for mode in (LadderMode.FIXED, LadderMode.AUTO):
            log(f"{mode} ladder: vtp run ({workers} workers) ...")
            jobs.append(_run_ladder(source, scratch / "jobs", config, mode, workers))
            log(f"  {jobs[-1].job_id}: {len(jobs[-1].manifest.renditions)} rungs in {jobs[-1].wall_s:.1f} s")
        entries = [(job, entry) for job in jobs for entry in job.manifest.renditions]
        frames = int((jobs[0].manifest.source or {}).get("frames") or max(e.frames for _, e in entries))
        width, height = info.video.display_width, info.video.display_height
        n = subsample or choose_subsample(frames, len(entries), width, height)
        files = [rung_file(job.folder, entry, scratch / f"{job.mode}_{entry.name}.mp4") for job, entry in entries]
        groups = max(1, min(workers, len(files)))
        indices = [list(range(g, len(files), groups)) for g in range(groups)]
        log(f"scoring {len(files)} rungs against the source, {frames} frames at {width}x{height}, "
            f"VMAF on {_every(n)}, {groups} scorer{'s' if groups > 1 else ''} ...")
        timeout = 600 + 30 * info.duration_s * max(len(group) for group in indices) * max(1.0, width * height / 2.1e6)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=groups) as pool:
            futures = [pool.submit(score_group, reader, info, [files[i] for i in group], scratch / f"score{g}", n, timeout)
                       for g, group in enumerate(indices)]
            outcomes = [future.result() for future in futures]
        scoring_wall = time.monotonic() - started
        scores: dict[int, Scores] = {}
        for group, (group_scores, _) in zip(indices, outcomes):
            scores.update(zip(group, group_scores))
        for index, (job, entry) in enumerate(entries):
            job.rungs.append(_figures(job.mode, entry, scores[index]))
        log(f"  scored in {scoring_wall:.1f} s")
    fixed, auto = jobs
    scoring = {
        "model": MODEL, "n_subsample": n, "frames": frames, "size": f"{width}x{height}",
        "note": (f"VMAF {MODEL} and PSNR-Y of each published rung against the source at {width}x{height} "
                 f"(rung scaled up bicubic), on {_every(n)} of the whole rung (libvmaf n_subsample {n})"),
        "wall_s": round(scoring_wall, 2), "cpu_s": round(sum(cpu for _, cpu in outcomes), 2),
    }
    return summarise(source.name, info, fixed, auto, scoring)


def _every(n: int) -> str:
    return "every frame" if n == 1 else f"every {n}{'nd' if n == 2 else 'rd' if n == 3 else 'th'} frame"


def _figures(mode: str, entry: RenditionEntry, scores: Scores) -> RungFigures:
    return RungFigures(
        ladder=mode, name=entry.name, width=entry.width, height=entry.height, size_bytes=entry.size_bytes,
        kbps=entry.measured_bitrate_kbps, peak_kbps=entry.peak_bitrate_kbps,
        vmaf_mean=round(scores.vmaf_mean, 3), vmaf_p5=round(scores.vmaf_p5, 3), psnr_y_db=round(scores.psnr_y_mean, 3),
        frames=entry.frames, frames_scored=len(scores.vmaf), target_vmaf=entry.target_vmaf,
        pipeline_vmaf=(entry.quality or {}).get("vmaf_mean"),
    )


def summarise(title: str, info: SourceInfo, fixed: LadderJob, auto: LadderJob, scoring: dict[str, Any]) -> dict[str, Any]:
    """The comparison's figures from the two measured jobs."""
    bd = bd_rate([(r.kbps, r.vmaf_mean) for r in fixed.rungs], [(r.kbps, r.vmaf_mean) for r in auto.rungs])
    encode_cpu = auto.encode_cpu_s
    without_quality = encode_cpu - auto.quality_cpu_s
    cpu = {
        "analysis_cpu_s": round(auto.analysis_cpu_s, 2),
        "encode_cpu_s": round(encode_cpu, 2),
        "analysis_share": _ratio(auto.analysis_cpu_s, encode_cpu),
        # The encoders also score their rungs' quality (sampled): their CPU without it.
        "encode_cpu_without_quality_s": round(without_quality, 2),
        "analysis_share_without_quality": _ratio(auto.analysis_cpu_s, without_quality),
        "fixed_encode_cpu_s": round(fixed.encode_cpu_s, 2),
        "rework_cpu_s": round(auto.rework_cpu_s, 2),
        "rework_share": _ratio(auto.rework_cpu_s, encode_cpu),
        "auto_over_fixed_cpu": _ratio(auto.analysis_cpu_s + encode_cpu + auto.rework_cpu_s, fixed.encode_cpu_s),
    }
    pairs = []
    for rank, rung in enumerate(fixed.rungs):
        # Rung for rung, from the top (the fitted ladder's may be of another size), and what
        # a player limited to the fixed rung's bit rate gets from the fitted ladder instead.
        match = auto.rungs[rank] if rank < len(auto.rungs) else None
        within = max((r for r in auto.rungs if r.kbps <= rung.kbps), key=lambda r: r.vmaf_mean, default=None)
        pairs.append({
            "rank": rank + 1, "fixed": rung.name, "fixed_size": rung.size, "fixed_bytes": rung.size_bytes,
            "fixed_kbps": rung.kbps, "fixed_vmaf": rung.vmaf_mean,
            "auto": match.name if match else None, "auto_size": match.size if match else None,
            "auto_bytes": match.size_bytes if match else None,
            "auto_kbps": match.kbps if match else None, "auto_vmaf": match.vmaf_mean if match else None,
            "bytes_ratio": _ratio(match.size_bytes, rung.size_bytes) if match else None,
            "vmaf_delta": round(match.vmaf_mean - rung.vmaf_mean, 3) if match else None,
            "auto_within_rate": within.name if within else None,
            "auto_within_rate_vmaf": within.vmaf_mean if within else None,
        })
    notes = [f"{job.mode} rung {r.name}: {r.frames} frames, the source {scoring['frames']}"
             for job in (fixed, auto) for r in job.rungs if r.frames != scoring["frames"]]
    return {
        "title": title,
        "source": {"duration_s": round(info.duration_s, 3), "width": info.video.display_width,
                   "height": info.video.display_height, "frame_rate": info.video.frame_rate},
        "scoring": scoring,
        "ladders": {"fixed": fixed.to_dict(), "auto": auto.to_dict()},
        "total_bytes_ratio": _ratio(auto.total_bytes, fixed.total_bytes),
        "bd_rate_vmaf_pct": round(bd, 2) if bd is not None else None,
        "bd_rate_note": _bd_note(fixed, auto, bd),
        "cpu": cpu,
        "pairs": pairs,
        "notes": notes,
    }


def _bd_note(fixed: LadderJob, auto: LadderJob, bd: float | None) -> str:
    counts = [len(rd_frontier([(r.kbps, r.vmaf_mean) for r in job.rungs])) for job in (fixed, auto)]
    how = (f"auto against fixed on (log kbit/s, VMAF mean), {counts[0]} and {counts[1]} rungs on each frontier, "
           "fits of degree min(3, rungs - 1) integrated over the VMAF range both cover")
    if bd is None:
        reason = "a ladder has fewer than 2 rungs that gain quality" if min(counts) < 2 else "the VMAF ranges do not overlap"
        return f"not defined: {reason} ({how})"
    return how


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


# --- output ------------------------------------------------------------------------------------


def print_report(report: dict[str, Any], console) -> None:
    from rich.table import Table

    source = report["source"]
    scoring = report["scoring"]
    for mode, title in (("fixed", "fixed ladder"), ("auto", "fitted ladder (auto)")):
        job = report["ladders"][mode]
        table = Table(title=f"{report['title']}: {title}, job {job['job_id']}, {job['wall_s']:.1f} s")
        for column in ("rung", "WxH", "kbit/s", "peak/avg", "bytes", "VMAF mean", "VMAF p5", "PSNR-Y dB",
                       "target VMAF", "pipeline VMAF"):
            table.add_column(column, justify="left" if column == "rung" else "right")
        for r in job["rungs"]:
            table.add_row(
                r["name"], f"{r['width']}x{r['height']}", f"{r['kbps']:.0f}", f"{r['peak_ratio']:.2f}",
                f"{r['size_bytes']:,}", f"{r['vmaf_mean']:.2f}", f"{r['vmaf_p5']:.2f}", f"{r['psnr_y_db']:.2f}",
                _number(r["target_vmaf"], "{:g}"), _number(r["pipeline_vmaf"], "{:.2f}"),
            )
        table.caption = f"{job['total_bytes']:,} bytes of video in all"
        console.print(table)
    cpu = report["cpu"]
    lines = [
        f"source: {source['duration_s']:g} s {source['width']}x{source['height']} at {source['frame_rate']} fps",
        f"scoring: {scoring['note']}; {scoring['frames']} frames; {scoring['wall_s']:.1f} s, {scoring['cpu_s']:.1f} CPU-s",
        f"total bytes auto / fixed: {_number(report['total_bytes_ratio'], '{:.3f}')}",
        "BD-rate (VMAF) of auto against fixed: " + (
            f"{report['bd_rate_vmaf_pct']:+.2f} % ({report['bd_rate_note']})" if report["bd_rate_vmaf_pct"] is not None
            else report["bd_rate_note"]),
        f"analysis CPU: {cpu['analysis_cpu_s']:.1f} s = {_percent(cpu['analysis_share'])} of the encode's "
        f"{cpu['encode_cpu_s']:.1f} s; {_percent(cpu['analysis_share_without_quality'])} of "
        f"{cpu['encode_cpu_without_quality_s']:.1f} s without the encoders' quality scoring",
        f"rework CPU (rungs encoded again): {cpu['rework_cpu_s']:.1f} s = {_percent(cpu['rework_share'])} of the encode's",
        f"auto job (analysis + encode + rework) / fixed job's encode ({cpu['fixed_encode_cpu_s']:.1f} s) CPU: "
        f"{_number(cpu['auto_over_fixed_cpu'], '{:.3f}')}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    pairs = Table(title="each fixed rung and the fitted rung of the same rank; the fitted ladder within the fixed rung's rate")
    for column in ("rank", "fixed", "fixed kbit/s", "fixed VMAF", "auto", "auto kbit/s", "auto VMAF", "bytes auto/fixed",
                   "VMAF auto-fixed", "auto within rate", "its VMAF"):
        pairs.add_column(column, justify="right")
    for pair in report["pairs"]:
        pairs.add_row(
            str(pair["rank"]), f"{pair['fixed']} {pair['fixed_size']}", f"{pair['fixed_kbps']:.0f}",
            f"{pair['fixed_vmaf']:.2f}", f"{pair['auto']} {pair['auto_size']}" if pair["auto"] else "-",
            _number(pair["auto_kbps"], "{:.0f}"), _number(pair["auto_vmaf"], "{:.2f}"),
            _number(pair["bytes_ratio"], "{:.3f}"), _number(pair["vmaf_delta"], "{:+.2f}"),
            pair["auto_within_rate"] or "-", _number(pair["auto_within_rate_vmaf"], "{:.2f}"),
        )
    console.print(pairs)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def run_ladder_benchmark(source: Path, config: PipelineConfig, *, workers: int | None = None, as_json: bool = False,
                         subsample: int | None = None) -> int:
    from rich.console import Console

    progress = Console(stderr=True)
    report = compare_ladders(source, config, workers=workers, subsample=subsample,
                             log=lambda message: progress.print(message, highlight=False, soft_wrap=True))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out = Console()
        if not out.is_terminal:
            out = Console(width=160)  # a file or a pipe: the tables whole, not cut to 80 columns
        print_report(report, out)
    return 0
