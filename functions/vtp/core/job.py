"""A job's stages over a local workspace: what the local runner and the Lambdas share.

The workspace layout is the same on disk and under `jobs/<job_id>/` in the work bucket:
`pieces/chunk_00000.nut`, `encoded/<rendition>/chunk_00000.mp4`, `audio/audio.mp4`,
`merged/<rendition>.mp4`.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import FIRST_EXCEPTION, Executor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from vtp.core import audio as audio_stage
from vtp.core import encode as encode_stage
from vtp.core import merge as merge_stage
from vtp.core import package as package_stage
from vtp.core import split as split_stage
from vtp.core import thumbnails as thumbnail_stage
from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import complete_manifest
from vtp.core.plan import Chunk, JobPlan, plan_job
from vtp.core.probe import SourceInfo, probe
from vtp.core.tools import SOURCE_PROTOCOLS, FfmpegFailed, ProcessStats
from vtp.core.validate import validate

PIECES = "pieces"
ENCODED = "encoded"
AUDIO_FILE = "audio/audio.mp4"
MERGED = "merged"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @staticmethod
    def piece_key(chunk: Chunk) -> str:
        return f"{PIECES}/{split_stage.piece_name(chunk)}"

    @staticmethod
    def encoded_key(rendition: str, chunk: Chunk) -> str:
        return f"{ENCODED}/{rendition}/{chunk.name}{encode_stage.CHUNK_SUFFIX}"

    def piece(self, chunk: Chunk) -> Path:
        return self.root / self.piece_key(chunk)

    @property
    def encoded_dir(self) -> Path:
        return self.root / ENCODED

    def encoded(self, rendition: str, chunk: Chunk) -> Path:
        return self.root / self.encoded_key(rendition, chunk)

    @property
    def audio(self) -> Path:
        return self.root / AUDIO_FILE

    def merged(self, rendition: str) -> Path:
        return self.root / MERGED / f"{rendition}.mp4"


class Timings(dict):
    """Seconds per stage; `measure` adds wall time to a key."""

    @contextmanager
    def measure(self, key: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self[key] = self.get(key, 0.0) + time.monotonic() - started


@contextmanager
def stage_errors(code: ErrorCode, what: str) -> Iterator[None]:
    """Turn an ffmpeg failure into a PipelineError naming the stage."""
    try:
        yield
    except FfmpegFailed as failure:
        raise PipelineError(code, f"{what} failed: {failure}") from failure


def prepare(source: str | Path, config: PipelineConfig, *, protocols: str = SOURCE_PROTOCOLS) -> tuple[SourceInfo, JobPlan]:
    """Probe, validate and plan."""
    info = probe(source, protocols=protocols)
    validate(info, config.limits)
    return info, plan_job(info, config)


def cut_piece(source: str | Path, chunk: Chunk, info: SourceInfo, workspace: Workspace, *, protocols: str = SOURCE_PROTOCOLS) -> ProcessStats:
    with stage_errors(ErrorCode.CORRUPT_INPUT, f"cutting {chunk.name} from the source"):
        return split_stage.cut_piece(source, chunk, info, workspace.piece(chunk), protocols=protocols)


def encode_chunk(chunk: Chunk, info: SourceInfo, plan: JobPlan, config: PipelineConfig, workspace: Workspace) -> ProcessStats:
    with stage_errors(ErrorCode.ENCODE_FAILED, f"encoding {chunk.name}"):
        return encode_stage.encode_chunk(
            workspace.piece(chunk), chunk, plan.renditions, info, config, workspace.encoded_dir
        ).stats


def encode_audio(source: str | Path, info: SourceInfo, config: PipelineConfig, workspace: Workspace, *, protocols: str = SOURCE_PROTOCOLS) -> ProcessStats | None:
    if not info.has_audio:
        return None
    with stage_errors(ErrorCode.ENCODE_FAILED, "encoding the audio"):
        return audio_stage.encode_audio(source, info, config, workspace.audio, protocols=protocols)


def finish(
    *,
    job_id: str,
    source_name: str,
    info: SourceInfo,
    plan: JobPlan,
    config: PipelineConfig,
    workspace: Workspace,
    publish_dir: Path,
    timings: Timings,
    workers: int = 2,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """Merge, check, package and make thumbnails into `publish_dir`; return the manifest to write last."""
    names = [r.name for r in plan.renditions]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        with timings.measure("merge_s"), stage_errors(ErrorCode.ENCODE_FAILED, "joining the chunks"):
            run_all(pool, [
                lambda name=name: merge_stage.merge_rendition(
                    plan.chunks,
                    [workspace.encoded(name, c) for c in plan.chunks],
                    workspace.merged(name),
                    info,
                )
                for name in names
            ])
        # The joined rungs replace the chunks: free the space (a Lambda's /tmp is finite).
        shutil.rmtree(workspace.encoded_dir, ignore_errors=True)
        on_step("merged")
        facts = {name: package_stage.measure(workspace.merged(name)) for name in names}
        _check_renditions(info, facts)
        audio_facts = package_stage.measure(workspace.audio, "a") if info.has_audio else None
        if audio_facts is not None:
            _check_audio(info, audio_facts)

        hls_dir = publish_dir / package_stage.HLS_DIR
        dash_dir = publish_dir / package_stage.DASH_DIR
        thumbs_dir = publish_dir / thumbnail_stage.THUMBNAILS_DIR
        top, bottom = plan.renditions[0], plan.renditions[-1]
        with timings.measure("package_s"), stage_errors(ErrorCode.ENCODE_FAILED, "packaging"):
            jobs = [
                lambda name=name: package_stage.package_hls_media(
                    workspace.merged(name), hls_dir / name, config, stream_kind="v"
                )
                for name in names
            ]
            if info.has_audio:
                jobs.append(lambda: package_stage.package_hls_media(
                    workspace.audio, hls_dir / package_stage.AUDIO_NAME, config, stream_kind="a"
                ))
            jobs.append(lambda: package_stage.package_dash(
                {name: workspace.merged(name) for name in names},
                workspace.audio if info.has_audio else None,
                dash_dir,
                config,
            ))
            jobs.append(lambda: thumbnail_stage.make_poster(
                workspace.merged(top.name), info.duration_s, thumbs_dir / thumbnail_stage.POSTER, config
            ))
            jobs.append(lambda: thumbnail_stage.make_sprites(
                workspace.merged(bottom.name), bottom.width, bottom.height, info.duration_s, thumbs_dir, config
            ))
            run_all(pool, jobs)
            package_stage.write_master_playlist(
                hls_dir, plan.renditions, facts, info.video.fps, audio_facts, config.audio_channels
            )
        on_step("packaged")

    renditions = [
        {
            "name": r.name,
            "width": r.width,
            "height": r.height,
            "codec": "h264",
            "codecs": facts[r.name].codec,
            "target_bitrate_kbps": r.bitrate_kbps,
            "measured_bitrate_kbps": round(facts[r.name].bitrate_kbps, 1),
            "frames": facts[r.name].frames,
            "duration_s": round(facts[r.name].duration_s, 6),
            "size_bytes": facts[r.name].size_bytes,
            "hls_playlist": f"{package_stage.HLS_DIR}/{r.name}/{package_stage.MEDIA_PLAYLIST}",
        }
        for r in plan.renditions
    ]
    audio = None
    if audio_facts is not None:
        audio = {
            "codec": "aac",
            "codecs": audio_facts.codec,
            "bitrate_kbps": config.audio_bitrate_kbps,
            "channels": config.audio_channels,
            "duration_s": round(audio_facts.duration_s, 6),
            "hls_playlist": f"{package_stage.HLS_DIR}/{package_stage.AUDIO_NAME}/{package_stage.MEDIA_PLAYLIST}",
        }
    outputs = {
        "hls_master": f"{package_stage.HLS_DIR}/{package_stage.MASTER_PLAYLIST}",
        "dash_manifest": f"{package_stage.DASH_DIR}/{package_stage.DASH_MANIFEST}",
        "poster": f"{thumbnail_stage.THUMBNAILS_DIR}/{thumbnail_stage.POSTER}",
        "thumbnails_vtt": f"{thumbnail_stage.THUMBNAILS_DIR}/{thumbnail_stage.TRACK}",
    }
    settings = {
        "video_codec": config.video_codec,
        "preset": config.preset,
        "rate_control": str(config.rate_control),
        "gop_s": config.gop_s,
        "chunk_s": config.chunk_s,
        "segment_s": config.segment_s,
    }
    return complete_manifest(
        job_id, source_name, info.summary(), renditions, audio, len(plan.chunks), timings, outputs, settings
    )


def run_all(pool: Executor, jobs: list[Callable[[], Any]], on_done: Callable[[Any], None] = lambda result: None) -> list[Any]:
    """Run jobs on the pool, results in order; the first failure cancels what has not started and is raised."""
    futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.add_done_callback(lambda f: on_done(f.result()) if not f.cancelled() and f.exception() is None else None)
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in done:
        if future.exception() is not None:
            for other in pending:
                other.cancel()
            wait(pending)
            raise future.exception()
    return [future.result() for future in futures]


def _check_renditions(info: SourceInfo, facts: dict[str, package_stage.MediaFacts]) -> None:
    # Within one frame: the last frame's display time is what a join can lose.
    frame_s = max(1.0 / max(info.video.fps, 1.0), info.video.last_frame_s)
    for name, fact in facts.items():
        if fact.frames != info.video.frames:
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED,
                f"{name} has {fact.frames} frames, the source {info.video.frames}",
            )
        if abs(fact.duration_s - info.duration_s) > frame_s + 1e-3:
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED,
                f"{name} lasts {fact.duration_s:.3f} s, the source {info.duration_s:.3f} s",
            )


def _check_audio(info: SourceInfo, fact: package_stage.MediaFacts) -> None:
    if abs(fact.duration_s - info.duration_s) > 0.05:
        raise PipelineError(
            ErrorCode.OUTPUT_CHECK_FAILED,
            f"the audio lasts {fact.duration_s:.3f} s, the video {info.duration_s:.3f} s",
        )
