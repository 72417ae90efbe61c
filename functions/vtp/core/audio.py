"""Audio: encoded once for the whole file, on the video's timeline.

Per-chunk audio drifts (AAC priming and padding per piece), so the audio is never cut.
It is shifted so that 0 is the first video frame, padded with silence or trimmed at the
start to begin exactly at 0, and padded or cut at the end to the video's duration.
"""

from __future__ import annotations

from pathlib import Path

from vtp.core.config import PipelineConfig
from vtp.core.probe import SourceInfo
from vtp.core.tools import SOURCE_PROTOCOLS, ProcessStats, ff, run_ffmpeg, source_input_options


def audio_args(source: str, info: SourceInfo, config: PipelineConfig, dest: Path, *, protocols: str = SOURCE_PROTOCOLS) -> list[str]:
    assert info.audio is not None
    duration = f"{info.duration_s:.6f}"
    stream = ff.input(str(source), **source_input_options(protocols))[str(info.audio.stream_index)]
    stream = (
        stream.filter("asetpts", f"PTS-{info.video.start_s:.6f}/TB")
        .filter("aresample", config.audio_sample_rate, **{"async": 1, "first_pts": 0})
        .filter("apad", whole_dur=duration)
        .filter("atrim", end=duration)
    )
    output = ff.output(
        stream,
        str(dest),
        **{
            "c:a": "aac",
            "b:a": f"{config.audio_bitrate_kbps}k",
            "ac": config.audio_channels,
            "ar": config.audio_sample_rate,
        },
    )
    return output.global_args("-copyts", "-loglevel", "error").get_args()


def encode_audio(source: str | Path, info: SourceInfo, config: PipelineConfig, dest: Path, *, protocols: str = SOURCE_PROTOCOLS) -> ProcessStats:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return run_ffmpeg(audio_args(str(source), info, config, dest, protocols=protocols)).stats
