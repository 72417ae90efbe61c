"""Package the merged renditions as HLS (fMP4/CMAF segments) and DASH, with stream copy.

ffmpeg writes the media playlists and the MPD; the HLS master playlist is written here,
since ffmpeg's own omits CODECS for video and players need it to choose renditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from vtp.core.config import PipelineConfig
from vtp.core.plan import Rendition
from vtp.core.tools import ProcessStats, ff, ffprobe_json, run_ffmpeg

HLS_DIR = "hls"
DASH_DIR = "dash"
MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "playlist.m3u8"
DASH_MANIFEST = "manifest.mpd"
AUDIO_NAME = "audio"

_H264_PROFILES = {"Baseline": (66, 0xC0), "Constrained Baseline": (66, 0xC0), "Main": (77, 0x40), "High": (100, 0x00)}


@dataclass(frozen=True)
class MediaFacts:
    """What a file really holds, measured with ffprobe."""

    frames: int
    duration_s: float
    size_bytes: int
    codec: str  # RFC 6381 string for CODECS=
    start_s: float

    @property
    def bitrate_kbps(self) -> float:
        return self.size_bytes * 8 / 1000 / self.duration_s if self.duration_s else 0.0


def measure(path: Path, kind: str = "v") -> MediaFacts:
    """One ffprobe pass over the file: stream, size and every packet."""
    described = ffprobe_json(
        [
            "-select_streams", f"{kind}:0",
            "-show_entries", "stream=codec_name,profile,level:format=size:packet=pts_time,duration_time,flags",
            str(path),
        ]
    )
    stream = described["streams"][0]
    # Packets flagged D (the AAC encoder's priming) are decoded but never played.
    times = [
        (float(p["pts_time"]), float(p.get("duration_time") or 0))
        for p in described["packets"]
        if "pts_time" in p and "D" not in p.get("flags", "")
    ]
    start = min(t for t, _ in times)
    last_time, last_duration = max(times)
    return MediaFacts(
        frames=len(times),
        duration_s=last_time + last_duration - start,
        size_bytes=int(described["format"]["size"]),
        codec=_codec_string(stream),
        start_s=start,
    )


def _codec_string(stream: dict) -> str:
    name = stream.get("codec_name")
    if name == "h264":
        profile_idc, constraints = _H264_PROFILES.get(stream.get("profile", "High"), (100, 0))
        return f"avc1.{profile_idc:02x}{constraints:02x}{int(stream.get('level', 40)):02x}"
    if name == "aac":
        return "mp4a.40.2" if stream.get("profile", "LC") == "LC" else "mp4a.40.5"
    return name or "unknown"


def package_hls_media(source: Path, dest_dir: Path, config: PipelineConfig, *, stream_kind: str) -> ProcessStats:
    dest_dir.mkdir(parents=True, exist_ok=True)
    output = ff.output(
        ff.input(str(source))[f"{stream_kind}:0"],
        str(dest_dir / MEDIA_PLAYLIST),
        c="copy",
        f="hls",
        hls_time=f"{config.segment_s:g}",
        hls_playlist_type="vod",
        hls_segment_type="fmp4",
        hls_fmp4_init_filename="init.mp4",
        hls_segment_filename=str(dest_dir / "segment_%05d.m4s"),
        hls_flags="independent_segments",
    )
    return run_ffmpeg(output.global_args("-loglevel", "error").get_args()).stats


def package_dash(videos: dict[str, Path], audio: Path | None, dest_dir: Path, config: PipelineConfig) -> ProcessStats:
    dest_dir.mkdir(parents=True, exist_ok=True)
    streams = [ff.input(str(path))["v:0"] for path in videos.values()]
    adaptation_sets = "id=0,streams=v"
    if audio is not None:
        streams.append(ff.input(str(audio))["a:0"])
        adaptation_sets += " id=1,streams=a"
    output = ff.output(
        *streams,
        str(dest_dir / DASH_MANIFEST),
        c="copy",
        f="dash",
        seg_duration=f"{config.segment_s:g}",
        use_template=1,
        use_timeline=1,
        adaptation_sets=adaptation_sets,
        init_seg_name="init-$RepresentationID$.m4s",
        media_seg_name="segment-$RepresentationID$-$Number%05d$.m4s",
    )
    return run_ffmpeg(output.global_args("-loglevel", "error").get_args()).stats


def playlist_bandwidth(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second over the segments of a media playlist."""
    durations: list[float] = []
    peak = 0.0
    total_bits = 0
    pending_duration = None
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            pending_duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and pending_duration is not None:
            bits = (playlist.parent / line).stat().st_size * 8
            total_bits += bits
            durations.append(pending_duration)
            peak = max(peak, bits / pending_duration if pending_duration else 0)
            pending_duration = None
    average = total_bits / sum(durations) if durations else 0
    return math.ceil(peak), math.ceil(average)


def write_master_playlist(
    hls_dir: Path,
    renditions: tuple[Rendition, ...],
    facts: dict[str, MediaFacts],
    frame_rate: float,
    audio_facts: MediaFacts | None,
    audio_channels: int,
) -> Path:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio_peak = audio_average = 0
    if audio_facts is not None:
        audio_peak, audio_average = playlist_bandwidth(hls_dir / AUDIO_NAME / MEDIA_PLAYLIST)
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_NAME}",NAME="default",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="{audio_channels}",URI="{AUDIO_NAME}/{MEDIA_PLAYLIST}"'
        )
    for rendition in renditions:
        peak, average = playlist_bandwidth(hls_dir / rendition.name / MEDIA_PLAYLIST)
        codecs = facts[rendition.name].codec
        attributes = [
            f"BANDWIDTH={peak + audio_peak}",
            f"AVERAGE-BANDWIDTH={average + audio_average}",
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f"FRAME-RATE={frame_rate:.3f}",
        ]
        if audio_facts is not None:
            codecs += f",{audio_facts.codec}"
            attributes.append(f'AUDIO="{AUDIO_NAME}"')
        attributes.insert(3, f'CODECS="{codecs}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(f"{rendition.name}/{MEDIA_PLAYLIST}")
    master = hls_dir / MASTER_PLAYLIST
    master.write_text("\n".join(lines) + "\n")
    return master
