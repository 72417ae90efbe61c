"""Publish a job from its encoders' results: checks, playlists, the MPD, the thumbnail
track and the manifest. Nothing here reads or writes media: its time and memory grow with
the number of chunks only.

One set of CMAF segments serves both formats: the HLS media playlists and the DASH
SegmentTimeline list the same files (`<rung>/segment_<start>.m4s`, named by their start in
the track's timescale, which is DASH's `$Time$`).
"""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

from vtp.core.analysis import ChunkAnalysis
from vtp.core.config import LadderMode, PipelineConfig
from vtp.core.cost import job_cost
from vtp.core.encode import AUDIO_NAME, THUMBNAILS_DIR, ChunkResult, TrackFacts, init_key, segment_key
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import (
    REPORT, AudioEntry, EncodeFigures, Manifest, RenditionEntry, StageFigures, Stages, now_iso,
)
from vtp.core.plan import JobPlan, Rendition
from vtp.core.probe import SourceInfo
from vtp.core.quality import rung_quality, sampling_note, sampling_stride
from vtp.core.storage import ObjectStore
from vtp.core.timeline import job_timeline

MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "playlist.m3u8"
DASH_MANIFEST = "manifest.mpd"
THUMBNAILS_TRACK = f"{THUMBNAILS_DIR}/thumbnails.vtt"
AUDIO_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Segment:
    key: str
    start: int
    duration: int
    frames: int
    bytes: int


@dataclass(frozen=True)
class Timeline:
    """One track's segments across all chunks, with durations from start to start."""

    name: str
    timescale: int
    codec: str
    segments: tuple[Segment, ...]

    @property
    def end(self) -> int:
        return self.segments[-1].start + self.segments[-1].duration

    @property
    def duration_s(self) -> float:
        return (self.end - self.segments[0].start) / self.timescale

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    def peak_bps(self) -> int:
        return math.ceil(max(s.bytes * 8 * self.timescale / s.duration for s in self.segments if s.duration > 0))

    def average_bps(self) -> int:
        return math.ceil(self.bytes * 8 / self.duration_s) if self.duration_s > 0 else 0


def check_results(results: list[ChunkResult], plan: JobPlan) -> None:
    """The chunks fit together: every one there, identical inits, no frame lost between them."""
    indices = [r.index for r in results]
    if indices != list(range(len(plan.chunks))):
        missing = sorted(set(range(len(plan.chunks))) - set(indices))
        raise PipelineError(ErrorCode.OUTPUT_CHECK_FAILED, f"results are missing for chunks {missing[:10]}")
    names = [r.name for r in plan.renditions]
    for track in [*names, AUDIO_NAME]:
        hashes = {_track(r, track).init_sha256 for r in results if _track(r, track) is not None}
        if len(hashes) > 1:
            raise PipelineError(ErrorCode.OUTPUT_CHECK_FAILED, f"{track}: the chunks' init segments differ")
    for before, after in zip(results, results[1:]):
        if before.next_frame != after.first_frame:
            scale = next(iter(after.video.values())).timescale
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED,
                f"chunk {after.index} starts at {after.first_frame / scale:.6f} s but the frame after chunk "
                f"{before.index} is at {(before.next_frame or 0) / scale:.6f} s: frames would be lost or doubled",
            )
        if before.audio and after.audio and before.audio.end != after.audio.segments[0].start:
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED, f"the audio of chunks {before.index} and {after.index} does not join"
            )
    for result in results:
        counts = {name: facts.frames for name, facts in result.video.items()}
        if set(counts) != set(names) or len(set(counts.values())) != 1:
            raise PipelineError(ErrorCode.OUTPUT_CHECK_FAILED, f"chunk {result.index}: rungs have {counts} frames")


def _track(result: ChunkResult, name: str) -> TrackFacts | None:
    return result.audio if name == AUDIO_NAME else result.video.get(name)


def timeline(results: list[ChunkResult], name: str) -> Timeline:
    facts = [_track(r, name) for r in results]
    tracks = [f for f in facts if f is not None]
    entries: list[tuple[int, int, int]] = [(s.start, s.frames, s.bytes) for t in tracks for s in t.segments]
    ends = [entries[i + 1][0] for i in range(len(entries) - 1)] + [tracks[-1].end]
    segments = tuple(
        Segment(segment_key(name, start), start, end - start, frames, size)
        for (start, frames, size), end in zip(entries, ends)
    )
    return Timeline(name, tracks[0].timescale, tracks[0].codec, segments)


def media_playlist(track: Timeline) -> str:
    target = max(1, math.ceil(max(s.duration for s in track.segments) / track.timescale - 1e-9))
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS", '#EXT-X-MAP:URI="init.mp4"',
    ]
    for segment in track.segments:
        lines.append(f"#EXTINF:{segment.duration / track.timescale:.6f},")
        lines.append(segment.key.split("/", 1)[1])
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(
    renditions: tuple[Rendition, ...], video: dict[str, Timeline], audio: Timeline | None, frame_rate: float, channels: int
) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio_peak = audio_average = 0
    if audio is not None:
        audio_peak, audio_average = audio.peak_bps(), audio.average_bps()
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_NAME}",NAME="default",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="{channels}",URI="{AUDIO_NAME}/{MEDIA_PLAYLIST}"'
        )
    for rendition in renditions:
        track = video[rendition.name]
        codecs = track.codec + (f",{audio.codec}" if audio is not None else "")
        attributes = [
            f"BANDWIDTH={track.peak_bps() + audio_peak}",
            f"AVERAGE-BANDWIDTH={track.average_bps() + audio_average}",
            f'CODECS="{codecs}"',
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f"FRAME-RATE={frame_rate:.3f}",
        ]
        if audio is not None:
            attributes.append(f'AUDIO="{AUDIO_NAME}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(f"{rendition.name}/{MEDIA_PLAYLIST}")
    return "\n".join(lines) + "\n"


def _segment_timeline(parent: ET.Element, track: Timeline) -> None:
    template = ET.SubElement(
        parent, "SegmentTemplate", timescale=str(track.timescale),
        initialization="$RepresentationID$/init.mp4", media="$RepresentationID$/segment_$Time$.m4s",
    )
    runs = ET.SubElement(template, "SegmentTimeline")
    previous_end = None
    current: ET.Element | None = None
    repeats = 0
    for segment in track.segments:
        if current is not None and segment.duration == int(current.get("d", "0")) and segment.start == previous_end:
            repeats += 1
            current.set("r", str(repeats))
        else:
            current = ET.SubElement(runs, "S", d=str(segment.duration))
            if segment.start != previous_end:
                current.set("t", str(segment.start))
            repeats = 0
        previous_end = segment.start + segment.duration


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def dash_manifest(
    renditions: tuple[Rendition, ...], video: dict[str, Timeline], audio: Timeline | None, info: SourceInfo,
    frame_rate: Fraction, duration_s: float, sample_rate: int, channels: int, segment_s: float,
) -> str:
    ET.register_namespace("", "urn:mpeg:dash:schema:mpd:2011")
    mpd = ET.Element(
        "MPD", xmlns="urn:mpeg:dash:schema:mpd:2011", profiles="urn:mpeg:dash:profile:isoff-live:2011",
        type="static", mediaPresentationDuration=_iso_duration(duration_s), minBufferTime=_iso_duration(segment_s),
    )
    period = ET.SubElement(mpd, "Period", id="0", start="PT0S")
    rate = f"{frame_rate.numerator}" if frame_rate.denominator == 1 else f"{frame_rate.numerator}/{frame_rate.denominator}"
    aspect = Fraction(info.video.display_width, info.video.display_height)
    top = renditions[0]
    video_set = ET.SubElement(
        period, "AdaptationSet", id="0", contentType="video", mimeType="video/mp4", segmentAlignment="true",
        startWithSAP="1", maxWidth=str(top.width), maxHeight=str(top.height), frameRate=rate,
        par=f"{aspect.numerator}:{aspect.denominator}",
    )
    _segment_timeline(video_set, video[top.name])  # one timeline: every rung's segments start together
    for rendition in renditions:
        track = video[rendition.name]
        ET.SubElement(
            video_set, "Representation", id=rendition.name, bandwidth=str(track.peak_bps()),
            width=str(rendition.width), height=str(rendition.height), codecs=track.codec,
            sar=rendition.sample_aspect.replace("/", ":"), frameRate=rate,
        )
    if audio is not None:
        audio_set = ET.SubElement(
            period, "AdaptationSet", id="1", contentType="audio", mimeType="audio/mp4", lang="und",
            segmentAlignment="true", startWithSAP="1",
        )
        _segment_timeline(audio_set, audio)
        representation = ET.SubElement(
            audio_set, "Representation", id=AUDIO_NAME, bandwidth=str(audio.peak_bps()), codecs=audio.codec,
            audioSamplingRate=str(sample_rate),
        )
        ET.SubElement(
            representation, "AudioChannelConfiguration",
            schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011", value=str(channels),
        )
    ET.indent(mpd)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


def thumbnails_track(results: list[ChunkResult], duration_s: float, interval: float) -> str:
    cues = ["WEBVTT", ""]
    for result in results:
        thumbs = result.thumbnails
        if thumbs.sprite is None:
            continue
        sprite = thumbs.sprite.split("/", 1)[1]
        for number, start in enumerate(thumbs.times):
            if start >= duration_s - 1e-4:
                break  # the header's duration was longer than the frames
            end = min(start + interval, duration_s)
            row, column = divmod(number, thumbs.row_length)
            x, y = column * thumbs.tile_width, row * thumbs.tile_height
            cues.append(f"{_timestamp(start)} --> {_timestamp(end)}")
            cues.append(f"{sprite}#xywh={x},{y},{thumbs.tile_width},{thumbs.tile_height}")
            cues.append("")
    return "\n".join(cues)


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def publish(
    *,
    job_id: str,
    source_name: str,
    info: SourceInfo,
    plan: JobPlan,
    config: PipelineConfig,
    results: list[ChunkResult],
    store: ObjectStore,
    prefix: str,
    split: StageFigures,
    started_at: float,
    reads: tuple[int, int] = (0, 0),
    merge_started: float | None = None,
    where: str = "local",
    split_worker: str = "",
    merge_worker: str = "",
    merge_memory_mb: int = 0,
    split_cold_start: bool | None = None,
    merge_cold_start: bool | None = None,
    report_objects: int = 0,
    analyses: tuple[ChunkAnalysis, ...] = (),
) -> Manifest:
    """Check the chunks, write every playlist, the MPD and the VTT; return the manifest to write last.

    `reads` is what the caller read to get here (bytes, requests: the facts, on AWS), and
    `merge_started` when it began (time.monotonic()), for the merge stage's figures; `where`
    (local or aws), the workers and memory are for the timeline and the cost, and
    `report_objects` the report files the caller will write beside the manifest.
    """
    started = merge_started if merge_started is not None else time.monotonic()
    merge_started_at = time.time() - (time.monotonic() - started)
    results = sorted(results, key=lambda r: r.index)
    with _blaming_damage(results):
        check_results(results, plan)
        video = {r.name: timeline(results, r.name) for r in plan.renditions}
        audio = timeline(results, AUDIO_NAME) if info.has_audio else None
        top = video[plan.renditions[0].name]
        duration_s = top.end / top.timescale
        if top.segments[0].start != 0:
            raise PipelineError(ErrorCode.OUTPUT_CHECK_FAILED, f"the first frame is at {top.segments[0].start / top.timescale:.6f} s, not 0")
        if audio is not None and abs(audio.end / audio.timescale - duration_s) > AUDIO_TOLERANCE_S:
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED,
                f"the audio lasts {audio.end / audio.timescale:.3f} s, the video {duration_s:.3f} s",
            )
    frame_rate = Fraction(info.video.frame_rate)
    documents: dict[str, str] = {}
    for name, track in video.items():
        documents[f"{name}/{MEDIA_PLAYLIST}"] = media_playlist(track)
    if audio is not None:
        documents[f"{AUDIO_NAME}/{MEDIA_PLAYLIST}"] = media_playlist(audio)
    documents[MASTER_PLAYLIST] = master_playlist(plan.renditions, video, audio, float(frame_rate), config.audio_channels)
    documents[DASH_MANIFEST] = dash_manifest(
        plan.renditions, video, audio, info, frame_rate, duration_s, config.audio_sample_rate, config.audio_channels,
        config.segment_s,
    )
    documents[THUMBNAILS_TRACK] = thumbnails_track(results, duration_s, config.thumbnail_interval_s)
    content_types = {".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml", ".vtt": "text/vtt"}
    for key, text in documents.items():
        store.put_bytes(prefix + key, text.encode(), content_types["." + key.rsplit(".", 1)[1]])
    written = sum(len(text.encode()) for text in documents.values())

    merge = StageFigures(
        wall_s=time.monotonic() - started, bytes_read=reads[0], bytes_written=written, requests=reads[1] + len(documents),
        objects_written=len(documents), memory_mb=merge_memory_mb,
    )
    encode = _encode_figures(results)
    poster = next((r.poster for r in results if r.poster), None)
    fit_figures, fit_started_at, fit_worker = fit_step(plan)
    figures = Stages(split=split, encode=encode, merge=merge, total_s=time.time() - started_at,
                     audio=_audio_figures(results), analyse=analysis_figures(analyses), fit=fit_figures,
                     rework=_rework_figures(results))
    clock = job_timeline(started_at=started_at, split=split, results=results, merge=merge,
                         merge_started_at=merge_started_at, split_worker=split_worker, merge_worker=merge_worker,
                         split_cold_start=split_cold_start, merge_cold_start=merge_cold_start,
                         analyses=tuple(analyses), fit=fit_figures, fit_started_at=fit_started_at,
                         fit_worker=fit_worker)
    renditions = tuple(
        _rendition_entry(r, video[r.name], _quality(results, r.name, info, config), _rate_factor(results, r))
        for r in plan.renditions
    )
    stored = encode.sum.bytes_written + written
    cost = job_cost(where=where, stages=figures, bars=clock.bars, renditions=renditions,
                    frame_rate=float(frame_rate), stored_bytes=stored, report_objects=report_objects)
    return Manifest(
        job_id=job_id,
        status="COMPLETE",
        input=source_name,
        finished_at=now_iso(),
        source=_source_summary(info, top),
        renditions=renditions,
        audio=_audio_entry(audio, config) if audio else None,
        chunks=len(results),
        stages=figures,
        outputs={
            "hls_master": MASTER_PLAYLIST,
            "dash_manifest": DASH_MANIFEST,
            "poster": poster or "",
            "thumbnails_vtt": THUMBNAILS_TRACK,
            "init_segments": ",".join(init_key(n) for n in [*video, *([AUDIO_NAME] if audio else [])]),
            "report": REPORT,
        },
        settings=_settings(config, renditions[0].quality["sampling"] if renditions[0].quality else None,
                           fitted=plan.fit is not None),
        where=where,
        timeline=clock,
        cost=cost.to_dict(),
        ladder=ladder_summary(plan, config, results),
    )


def ladder_summary(plan: JobPlan, config: PipelineConfig, results: list[ChunkResult]) -> dict[str, Any]:
    """The manifest's `ladder`: how the rungs were chosen, and what was encoded again."""
    if plan.fit is None:
        reason = "" if config.ladder_mode is LadderMode.FIXED else " (no quality scorer to fit one with)"
        return {"mode": "fixed", "note": f"the same rungs for every title{reason}"}
    return {**plan.fit, "rework": rework_summary(results)}


def _rework_figures(results: list[ChunkResult]) -> EncodeFigures | None:
    reworked = [r for r in results if r.rework_figures]
    if not reworked:
        return None
    figures = [r.rework_figures for r in reworked if r.rework_figures]
    span = max(r.rework_ended_at for r in reworked) - min(r.rework_started_at for r in reworked)
    return EncodeFigures(len(figures), sum(figures, StageFigures()), StageFigures.peak(figures), span)


def fit_step(plan: JobPlan) -> tuple[StageFigures | None, float | None, str]:
    """The fitting step's figures, start (epoch seconds) and worker, which the fit keeps in the plan."""
    step = (plan.fit or {}).get("step")
    if not step:
        return None, None, ""
    return StageFigures.from_dict(step), step.get("started_at"), step.get("worker", "")


def analysis_figures(analyses: tuple[ChunkAnalysis, ...] | list[ChunkAnalysis]) -> EncodeFigures | None:
    if not analyses:
        return None
    figures = [a.figures for a in analyses]
    span = max(a.ended_at for a in analyses) - min(a.started_at for a in analyses)
    return EncodeFigures(len(figures), sum(figures, StageFigures()), StageFigures.peak(figures), span)


def _rate_factor(results: list[ChunkResult], rendition: Rendition) -> dict[str, float] | None:
    """A fitted rung's rate factor, and the range of its chunks' own."""
    if not rendition.maxrate_kbps:
        return None
    used = [r.rates.crf[rendition.name] for r in results if r.rates and rendition.name in r.rates.crf]
    return {"rung": rendition.crf, "chunk_min": min(used, default=rendition.crf),
            "chunk_max": max(used, default=rendition.crf)}


@contextmanager
def _blaming_damage(results: list[ChunkResult]) -> Iterator[None]:
    """Chunks that do not fit together are the pipeline's fault, unless ffmpeg found the
    source's container damaged while reading them: then the damage is the cause (timestamps
    that jump, frames or audio missing), and retrying cannot help."""
    try:
        yield
    except PipelineError as error:
        damage = next((r.source_damage for r in results if r.source_damage), "")
        if error.code is not ErrorCode.OUTPUT_CHECK_FAILED or not damage:
            raise
        raise PipelineError(ErrorCode.CORRUPT_INPUT, f"the file is damaged ({damage}), so {error.message}") from None


def _encode_figures(results: list[ChunkResult]) -> EncodeFigures:
    figures = [r.figures for r in results]
    total = sum(figures, StageFigures())
    # The most of each figure over the chunks (not necessarily one chunk's).
    peak = StageFigures.peak(figures)
    span = max(r.ended_at for r in results) - min(r.started_at for r in results)
    return EncodeFigures(len(results), total, peak, span)


def _audio_figures(results: list[ChunkResult]) -> EncodeFigures | None:
    figures = [r.audio_figures for r in results if r.audio_figures is not None]
    if not figures:
        return None
    peak = StageFigures.peak(figures)
    return EncodeFigures(len(figures), sum(figures, StageFigures()), peak, max(f.wall_s for f in figures))


def _source_summary(info: SourceInfo, top: Timeline) -> dict[str, Any]:
    return {
        "duration_s": round(top.duration_s, 6),
        "width": info.video.display_width,
        "height": info.video.display_height,
        "frame_rate": info.video.frame_rate,
        "frames": top.frames,
        "has_audio": info.has_audio,
        "video_codec": info.video.codec,
        "container": info.format_name,
        "rotation": info.video.rotation,
        "variable_frame_rate": info.video.variable_frame_rate,
        "interlaced": info.video.interlaced,
        "size_bytes": info.size_bytes,
    }


def _rendition_entry(rendition: Rendition, track: Timeline, quality: dict[str, Any] | None = None,
                     rate_factor: dict[str, float] | None = None) -> RenditionEntry:
    return RenditionEntry(
        name=rendition.name,
        width=rendition.width,
        height=rendition.height,
        codec="h264",
        codecs=track.codec,
        target_bitrate_kbps=rendition.bitrate_kbps,
        measured_bitrate_kbps=round(track.average_bps() / 1000, 1),
        peak_bitrate_kbps=round(track.peak_bps() / 1000, 1),
        frames=track.frames,
        duration_s=round(track.duration_s, 6),
        size_bytes=track.bytes,
        segments=len(track.segments),
        hls_playlist=f"{rendition.name}/{MEDIA_PLAYLIST}",
        quality=quality,
        target_vmaf=rendition.target_vmaf,
        maxrate_kbps=rendition.maxrate_kbps,
        rate_factor=rate_factor,
    )


def _quality(results: list[ChunkResult], name: str, info: SourceInfo, config: PipelineConfig) -> dict[str, Any] | None:
    """The rung's quality over the chunks that measured it (all of them, or none: a chunk whose
    encoder had no scorer leaves the figure out rather than skewing it)."""
    scored = [r.quality[name] for r in results if r.quality and name in r.quality]
    if len(scored) != len(results):
        return None
    return rung_quality(scored, sampling_note(sampling_stride(info, config), config))


def _audio_entry(track: Timeline, config: PipelineConfig) -> AudioEntry:
    return AudioEntry(
        codec="aac",
        codecs=track.codec,
        bitrate_kbps=config.audio_bitrate_kbps,
        measured_bitrate_kbps=round(track.average_bps() / 1000, 1),
        channels=config.audio_channels,
        sample_rate=config.audio_sample_rate,
        duration_s=round(track.duration_s, 6),
        size_bytes=track.bytes,
        hls_playlist=f"{AUDIO_NAME}/{MEDIA_PLAYLIST}",
    )


def _settings(config: PipelineConfig, quality_sampling: str | None, *, fitted: bool) -> dict[str, Any]:
    return {
        "video_codec": config.video_codec,
        "preset": config.preset,
        "ladder": "auto" if fitted else "fixed",
        "rate_control": "capped_vbr" if fitted else str(config.rate_control),
        "gop_s": config.gop_s,
        "chunk_s": config.chunk_s,
        "segment_s": config.segment_s,
        "audio_bitrate_kbps": config.audio_bitrate_kbps,
        "quality_sampling": quality_sampling,  # None: quality not measured
    }


def rework_summary(results: list[ChunkResult]) -> dict[str, Any]:
    """The manifest's `ladder.rework`: each chunk-rung encoded again and why, and its cost."""
    reworked = sorted((r for r in results if r.rework), key=lambda r: r.index)
    figures = sum((r.rework_figures for r in reworked if r.rework_figures), StageFigures())
    return {
        "chunk_rungs": sum(len(r.rework.rungs) for r in reworked if r.rework),
        "items": [{"chunk": r.index, **rung.to_dict()} for r in reworked if r.rework for rung in r.rework.rungs],
        "cpu_s": round(figures.cpu_s, 3),
        "wall_s": round(figures.wall_s, 3),
    }
