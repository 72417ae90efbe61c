"""`vtp bench`: the pipeline against one ffmpeg command making the same ladder, side by side.

Both sides use the same encoder, preset, GOP, rate control, scaling and audio settings.
The single command is what a user would run instead: decode once, split to every rung,
write an HLS ladder directly. Reported: wall and CPU time, bytes of video, PSNR of the top
rung against the source, and the peak memory of the largest encoding process.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vtp.core.config import LadderMode, PipelineConfig
from vtp.core.encode import encoder_options, picture_chain, scale_chain
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core import stages
from vtp.core.plan import plan_ladder
from vtp.core.probe import SourceInfo
from vtp.core.source import local_source
from vtp.core.tools import ff, run_ffmpeg, vmaf_binary
from vtp.local.runner import default_workers, run_job


@dataclass
class SideResult:
    name: str
    wall_s: float
    cpu_s: float
    video_bytes: int
    top_psnr_db: float
    peak_rss_mb: float
    top_playlist: Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + own.ru_utime + own.ru_stime


def single_ffmpeg_args(source: Path, info: SourceInfo, config: PipelineConfig, out_dir: Path) -> list[str]:
    renditions = plan_ladder(info, config.ladder)
    source_input = ff.input(str(source))
    video = picture_chain(source_input[str(info.video.stream_index)], info)
    branches = video.filter_multi_output("split", len(renditions))
    streams = [scale_chain(branches[i], r) for i, r in enumerate(renditions)]
    options: dict[str, object] = {}
    for index, rendition in enumerate(renditions):
        # The same keyframe grid as the pipeline's (which forces it per chunk, from the chunk's start).
        forced = {"force_key_frames": f"expr:gte(t,n_forced*{config.gop_s:g})"}
        for key, value in {**encoder_options(rendition, info, config), **forced}.items():
            # "crf" and "c:v" alike become the per-stream "crf:v:0", "c:v:0"
            options[f"{key.split(':')[0]}:v:{index}"] = value
    stream_map = [f"v:{i},agroup:audio,name:{r.name}" for i, r in enumerate(renditions)]
    if info.has_audio:
        streams.append(source_input[str(info.audio.stream_index)])
        options.update({
            "c:a": "aac", "b:a": f"{config.audio_bitrate_kbps}k",
            "ac": config.audio_channels, "ar": config.audio_sample_rate,
        })
        stream_map.append("a:0,agroup:audio,name:audio")
    else:
        stream_map = [entry.replace(",agroup:audio", "") for entry in stream_map]
    output = ff.output(
        *streams,
        str(out_dir / "%v" / "playlist.m3u8"),
        f="hls",
        hls_time=f"{config.segment_s:g}",
        hls_playlist_type="vod",
        hls_segment_type="fmp4",
        hls_segment_filename=str(out_dir / "%v" / "segment_%05d.m4s"),
        master_pl_name="master.m3u8",
        var_stream_map=" ".join(stream_map),
        **options,
    )
    return output.global_args("-loglevel", "error").get_args()


def _video_bytes(hls_dir: Path, names: list[str]) -> int:
    return sum(f.stat().st_size for name in names for f in (hls_dir / name).iterdir() if f.suffix in (".m4s", ".mp4"))


def top_rung_psnr(rendition_playlist: Path, source: Path, info: SourceInfo, width: int, height: int) -> float:
    """Mean PSNR (all planes) of a rendition against the source scaled to the rendition's size."""
    encoded = ff.input(str(rendition_playlist), protocol_whitelist="file")["v:0"].filter("setpts", "PTS-STARTPTS")
    reference = picture_chain(ff.input(str(source))[str(info.video.stream_index)], info)
    reference = (
        reference.filter("setpts", "PTS-STARTPTS")
        .filter("scale", width, height, flags="bicubic")
        .filter("format", "yuv420p")
    )
    compared = ff.filter([encoded, reference], "psnr")
    result = run_ffmpeg(ff.output(compared, "-", f="null").global_args("-loglevel", "info").get_args())
    for line in reversed(result.stderr.splitlines()):
        if "PSNR" in line and "average:" in line:
            value = line.split("average:")[1].split()[0]
            return float("inf") if value == "inf" else float(value)
    raise PipelineError(ErrorCode.INTERNAL_ERROR, "ffmpeg printed no PSNR")


def run_single(source: Path, info: SourceInfo, config: PipelineConfig, work: Path) -> SideResult:
    out_dir = work / "single"
    renditions = plan_ladder(info, config.ladder)
    names = [r.name for r in renditions]
    for name in [*names, "audio"]:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    result = run_ffmpeg(single_ffmpeg_args(source, info, config, out_dir))
    top = out_dir / names[0] / "playlist.m3u8"
    return SideResult(
        "single ffmpeg", result.stats.wall_s, result.stats.cpu_s, _video_bytes(out_dir, names),
        top_rung_psnr(top, source, info, renditions[0].width, renditions[0].height),
        result.stats.max_rss_mb, top,
    )


def run_pipeline(source: Path, info: SourceInfo, config: PipelineConfig, work: Path, workers: int) -> SideResult:
    cpu_before = _children_cpu()
    started = time.monotonic()
    result = run_job(source, work / "pipeline", config=config, workers=workers)
    wall = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    if result.error is not None:
        raise result.error
    names = [r.name for r in result.manifest.renditions]
    top = result.manifest.renditions[0]
    playlist = result.folder / top.hls_playlist
    return SideResult(
        "pipeline", wall, cpu, _video_bytes(result.folder, names),
        top_rung_psnr(playlist, source, info, top.width, top.height),
        max((r.figures.max_rss_mb for r in result.results), default=0.0), playlist,
    )


def compare(single: SideResult, pipeline: SideResult) -> dict[str, float]:
    size_ratio = pipeline.video_bytes / single.video_bytes
    psnr_delta = pipeline.top_psnr_db - single.top_psnr_db
    figures = {
        "wall_ratio": round(pipeline.wall_s / single.wall_s, 4),
        "cpu_ratio": round(pipeline.cpu_s / single.cpu_s, 4),
        "size_ratio": round(size_ratio, 4),
        "psnr_delta_db": round(psnr_delta, 4),
    }
    if abs(size_ratio - 1) > 1e-4:
        figures["db_per_percent_bytes"] = round(psnr_delta / ((size_ratio - 1) * 100), 4)
    return figures


def run_benchmark(source: Path, config: PipelineConfig, *, workers: int | None = None, as_json: bool = False, repeat: int = 1) -> int:
    from rich.console import Console
    from rich.table import Table

    workers = workers or default_workers()
    # The same rungs on both sides: one ffmpeg command cannot fit a ladder, so the pipeline runs
    # the fixed one here (`--ladder compare` measures the fitted one).
    config = config.with_changes(ladder_mode=LadderMode.FIXED)
    info, _, _ = stages.inspect(local_source(source), config)
    console = Console(stderr=True)
    singles, pipelines = [], []
    # The same work on both sides: the single ffmpeg measures no quality, so neither does the
    # pipeline here; what measuring costs is one more pipeline run, with it, at the end.
    same_work = config.with_changes(quality_samples=0)
    measured = None
    with tempfile.TemporaryDirectory(prefix="vtp-bench-") as scratch:
        for round_number in range(repeat):
            work = Path(scratch) / f"round{round_number}"
            console.print(f"[{round_number + 1}/{repeat}] single ffmpeg ...")
            singles.append(run_single(source, info, config, work))
            console.print(f"[{round_number + 1}/{repeat}] pipeline ({workers} workers) ...")
            pipelines.append(run_pipeline(source, info, same_work, work, workers))
            shutil.rmtree(work, ignore_errors=True)
        if config.quality_samples and vmaf_binary():
            console.print("pipeline with quality measured ...")
            measured = run_pipeline(source, info, config, Path(scratch) / "quality", workers)
    single = _median(singles)
    pipeline = _median(pipelines)
    figures = compare(single, pipeline)
    if measured is not None:
        figures["quality_cpu_ratio"] = round(measured.cpu_s / pipeline.cpu_s, 4)

    if as_json:
        print(json.dumps(figures))
        return 0
    table = Table(title=f"{source.name}: {info.duration_s:.1f} s {info.video.display_width}x{info.video.display_height}, "
                        f"{config.preset}, {config.rate_control}, GOP {config.gop_s:g} s, {os.cpu_count()} CPUs")
    table.add_column("")
    table.add_column("single ffmpeg", justify="right")
    table.add_column("pipeline", justify="right")
    table.add_column("pipeline / single", justify="right")
    table.add_row("wall s", f"{single.wall_s:.1f}", f"{pipeline.wall_s:.1f}", f"{figures['wall_ratio']:.3f}")
    table.add_row("CPU s", f"{single.cpu_s:.1f}", f"{pipeline.cpu_s:.1f}", f"{figures['cpu_ratio']:.3f}")
    table.add_row("video bytes", f"{single.video_bytes:,}", f"{pipeline.video_bytes:,}", f"{figures['size_ratio']:.4f}")
    table.add_row("top rung PSNR dB", f"{single.top_psnr_db:.3f}", f"{pipeline.top_psnr_db:.3f}", f"{figures['psnr_delta_db']:+.3f} dB")
    table.add_row("peak RSS of largest encode, MB", f"{single.peak_rss_mb:.0f}", f"{pipeline.peak_rss_mb:.0f}", "")
    if measured is not None:
        table.add_row("CPU s with quality measured", "", f"{measured.cpu_s:.1f}",
                      f"{figures['quality_cpu_ratio']:.3f} x the pipeline's")
    if "db_per_percent_bytes" in figures:
        table.add_row("quality per extra byte", "", "", f"{figures['db_per_percent_bytes']:+.3f} dB per 1 % bytes")
    Console().print(table)
    print(json.dumps(figures))
    return 0


def _median(sides: list[SideResult]) -> SideResult:
    if len(sides) == 1:
        return sides[0]
    ordered = sorted(sides, key=lambda side: side.wall_s)
    middle = ordered[len(ordered) // 2]
    middle.cpu_s = statistics.median(side.cpu_s for side in sides)
    return middle
