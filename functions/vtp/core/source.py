"""How ffmpeg reads a job's source: a local file, or one version of an S3 object over HTTPS.

The source is untrusted. ffmpeg gets it as a URL it cannot mistake for an option or
another protocol (`file:/abs/path`, never a bare name: a file called `-report` or
`pipe:0.mp4` is just a file), with three whitelists:

- protocols: only the one that reads this source (`file`, or `https,tls,tcp` for a
  presigned URL), so a playlist inside the file cannot make ffmpeg open anything else;
- formats: containers of video files; playlist and list formats (HLS, DASH, concat,
  image sequences) and raw elementary streams are not among them;
- codecs: the decoders of the video and audio formats vtp accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vtp.core.errors import ErrorCode, PipelineError

# Containers with timestamps that can be cut by time. Audio-only formats are listed so
# that such a file is refused as NO_VIDEO_STREAM rather than as unreadable.
SOURCE_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpeg,mpegts,avi,flv,asf,ogg,nut,mxf,gxf,dv,ivf,yuv4mpegpipe,wtv,"
    "wav,mp3,aac,flac"
)
# ffprobe's names of those containers ("mov,mp4,m4a,3gp,3g2,mj2" is one name).
ACCEPTED_CONTAINERS = frozenset(SOURCE_FORMATS.split(","))

# ffprobe's names of the codecs (codec_name) vtp accepts. AV1 is not among them: this
# FFmpeg build's only AV1 decoder needs hardware acceleration (no libdav1d or libaom), so
# an AV1 file cannot be decoded here and is refused as unsupported, not as corrupt.
VIDEO_CODECS = (
    "h264", "hevc", "vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4", "msmpeg4v2", "msmpeg4v3", "h263",
    "vc1", "wmv1", "wmv2", "wmv3", "prores", "dnxhd", "mjpeg", "theora", "ffv1", "rawvideo", "dvvideo", "cfhd",
    "flv1",
)
AUDIO_CODECS = (
    "aac", "mp3", "mp2", "mp1", "ac3", "eac3", "opus", "vorbis", "flac", "alac", "dts", "truehd", "wmav1",
    "wmav2", "amr_nb", "amr_wb",
    "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be", "pcm_f32le", "pcm_f32be",
    "pcm_f64le", "pcm_u8", "pcm_s8", "pcm_mulaw", "pcm_alaw", "pcm_bluray", "pcm_dvd",
)
# The codec whitelist is matched against decoder names, which are not always the codec's
# name: MP3 is decoded by "mp3float" (ffmpeg's first choice), Sorenson Spark (flv1) by
# "flv", DTS by "dca". Without these, such files could not be decoded at all.
_DECODERS = {
    "flv1": ("flv",), "msmpeg4v3": ("msmpeg4",), "mp3": ("mp3float", "mp3"), "mp2": ("mp2", "mp2float"),
    "mp1": ("mp1", "mp1float"), "ac3": ("ac3", "ac3_fixed"), "aac": ("aac", "aac_fixed"), "dts": ("dca",),
    "amr_nb": ("amrnb",), "amr_wb": ("amrwb",),
}
# Decoders ffmpeg may open for the source (a codec whitelist beside the format whitelist).
SOURCE_CODECS = ",".join(name for codec in (*VIDEO_CODECS, *AUDIO_CODECS) for name in _DECODERS.get(codec, (codec,)))

# CA certificates for ffmpeg's TLS (its static build carries none): the Lambda runtime's bundle.
CA_FILE_ENV = "VTP_CA_FILE"
CA_FILES = ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt")

LOCAL_PROTOCOLS = "file"
HTTPS_PROTOCOLS = "https,tls,tcp"
HTTP_PROTOCOLS = "http,tcp"  # LocalStack's endpoint on 127.0.0.1


@dataclass(frozen=True)
class Source:
    url: str  # what ffmpeg opens
    name: str  # what the user calls it: the path given, or s3://bucket/key
    protocols: str
    size_bytes: int
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (If-Match pins an unversioned object)

    @property
    def is_http(self) -> bool:
        return self.url.startswith(("http:", "https:"))

    def input_options(self) -> dict[str, object]:
        """ffmpeg/ffprobe input options for reading this untrusted source."""
        options: dict[str, object] = {
            "protocol_whitelist": self.protocols,
            "format_whitelist": SOURCE_FORMATS,
            "codec_whitelist": SOURCE_CODECS,
        }
        if self.is_http:
            # A dropped connection is resumed at the same byte; keep-alive serves the ranged GETs.
            options.update({"reconnect": 1, "reconnect_on_network_error": 1, "reconnect_delay_max": 4,
                            "multiple_requests": 1, "seekable": 1})
            if self.headers:
                options["headers"] = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
            ca_file = os.environ.get(CA_FILE_ENV) or next((p for p in CA_FILES if os.path.exists(p)), None)
            if self.url.startswith("https:") and ca_file:
                options.update({"tls_verify": 1, "ca_file": ca_file})
        return options

    def input_args(self) -> list[str]:
        args: list[str] = []
        for key, value in self.input_options().items():
            args += [f"-{key}", str(value)]
        return args


def local_source(path: str | Path) -> Source:
    """A local file; refused before anything reads it if it is missing, not a file, or empty."""
    path = Path(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"no such file: {path}") from None
    except OSError as error:
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"cannot read {path}: {error.strerror}") from None
    if not path.is_file():
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"{path} is not a regular file")
    if stat.st_size == 0:
        raise PipelineError(ErrorCode.EMPTY_INPUT, "the file is empty (0 bytes)")
    return Source(url=f"file:{path.resolve()}", name=str(path), protocols=LOCAL_PROTOCOLS, size_bytes=stat.st_size)


def url_source(url: str, *, name: str, size_bytes: int, headers: dict[str, str] | None = None) -> Source:
    """A presigned URL of one object version (HTTPS on AWS, HTTP for LocalStack)."""
    protocols = HTTPS_PROTOCOLS if url.startswith("https:") else HTTP_PROTOCOLS
    return Source(url=url, name=name, protocols=protocols, size_bytes=size_bytes,
                  headers=tuple(sorted((headers or {}).items())))
