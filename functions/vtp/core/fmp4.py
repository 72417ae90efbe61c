"""Fragmented MP4 (CMAF) as the encoders write it: split into an init segment and media
segments, measure every sample, and fix the duration of a chunk's last sample.

Only the boxes a fragmented MP4 from ffmpeg's muxer holds are read: `ftyp`/`moov` (the
init segment: `mdhd` timescale, `avcC`/`esds` for the CODECS string) and `moof`+`mdat`
pairs (`tfhd` defaults, `tfdt` base decode time, `trun` samples). Times are presentation
times in the track's timescale: decode time plus the (signed, version 1) composition
offset, so a segment's first frame is where a player puts it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts", b"dinf", b"stsd"}

# tfhd flags
_BASE_DATA_OFFSET = 0x1
_SAMPLE_DESCRIPTION = 0x2
_DEFAULT_DURATION = 0x8
_DEFAULT_SIZE = 0x10
_DEFAULT_FLAGS = 0x20
# trun flags
_DATA_OFFSET = 0x1
_FIRST_SAMPLE_FLAGS = 0x4
_SAMPLE_DURATION = 0x100
_SAMPLE_SIZE = 0x200
_SAMPLE_FLAGS = 0x400
_SAMPLE_CTO = 0x800
# sample flags: sample_is_non_sync_sample
_NON_SYNC = 0x00010000


class Fmp4Error(Exception):
    """The file is not the fragmented MP4 the encoder should have written."""


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int
    size: int
    header: int

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def body(self) -> int:
        return self.start + self.header


def boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> list[Box]:
    end = len(data) if end is None else end
    found = []
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise Fmp4Error(f"box {kind!r} at {offset} runs past the end")
        found.append(Box(kind, offset, size, header))
        offset += size
    return found


def find(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> Box | None:
    """The first box along `path` (e.g. [b"moov", b"trak", b"mdia", b"mdhd"])."""
    for box in boxes(data, start, end):
        if box.kind == path[0]:
            if len(path) == 1:
                return box
            inner_start = box.body + (8 if box.kind == b"stsd" else 0)
            return find(data, path[1:], inner_start, box.end)
    return None


@dataclass
class Sample:
    decode: int  # decode time, track timescale
    duration: int
    size: int
    offset: int  # composition offset (signed)
    sync: bool

    @property
    def presentation(self) -> int:
        return self.decode + self.offset


@dataclass
class Fragment:
    """One moof+mdat pair."""

    start: int  # byte offset of the moof
    end: int  # byte offset after the mdat
    samples: list[Sample] = field(default_factory=list)

    @property
    def first_presentation(self) -> int:
        return min(s.presentation for s in self.samples)


@dataclass(frozen=True)
class Track:
    """A parsed fragmented MP4: its init segment and its fragments."""

    data: bytes
    init_end: int
    timescale: int
    fragments: tuple[Fragment, ...]

    @property
    def init(self) -> bytes:
        return self.data[: self.init_end]

    @property
    def init_sha256(self) -> str:
        return hashlib.sha256(self.init).hexdigest()

    @property
    def samples(self) -> list[Sample]:
        return [s for fragment in self.fragments for s in fragment.samples]


def parse(data: bytes) -> Track:
    top = boxes(data)
    moof_at = next((i for i, box in enumerate(top) if box.kind == b"moof"), len(top))
    if not any(box.kind == b"moov" for box in top[:moof_at]):
        raise Fmp4Error("no moov box before the first fragment")
    init_end = top[moof_at].start if moof_at < len(top) else len(data)
    timescale = _timescale(data)
    defaults = _trex_defaults(data)
    fragments = []
    index = moof_at
    while index < len(top):
        moof = top[index]
        if moof.kind != b"moof":
            index += 1
            continue
        if index + 1 >= len(top) or top[index + 1].kind != b"mdat":
            raise Fmp4Error(f"moof at {moof.start} is not followed by its mdat")
        mdat = top[index + 1]
        fragments.append(Fragment(moof.start, mdat.end, _samples(data, moof, defaults)))
        index += 2
    return Track(data, init_end, timescale, tuple(fragments))


def _timescale(data: bytes) -> int:
    mdhd = find(data, [b"moov", b"trak", b"mdia", b"mdhd"])
    if mdhd is None:
        raise Fmp4Error("no mdhd box")
    version = data[mdhd.body]
    offset = mdhd.body + (20 if version == 1 else 12)
    return struct.unpack_from(">I", data, offset)[0]


def _trex_defaults(data: bytes) -> tuple[int, int, int]:
    trex = find(data, [b"moov", b"mvex", b"trex"])
    if trex is None:
        return (0, 0, 0)
    # version/flags, track_ID, default_sample_description_index, duration, size, flags
    _, _, _, duration, size, flags = struct.unpack_from(">IIIIII", data, trex.body)
    return duration, size, flags


def _samples(data: bytes, moof: Box, defaults: tuple[int, int, int]) -> list[Sample]:
    traf = find(data, [b"traf"], moof.body, moof.end)
    if traf is None:
        raise Fmp4Error(f"moof at {moof.start} has no traf")
    default_duration, default_size, default_flags = defaults
    decode = 0
    samples: list[Sample] = []
    for box in boxes(data, traf.body, traf.end):
        if box.kind == b"tfhd":
            flags = int.from_bytes(data[box.body + 1 : box.body + 4], "big")
            position = box.body + 8  # version/flags, track_ID
            if flags & _BASE_DATA_OFFSET:
                position += 8
            if flags & _SAMPLE_DESCRIPTION:
                position += 4
            if flags & _DEFAULT_DURATION:
                (default_duration,) = struct.unpack_from(">I", data, position)
                position += 4
            if flags & _DEFAULT_SIZE:
                (default_size,) = struct.unpack_from(">I", data, position)
                position += 4
            if flags & _DEFAULT_FLAGS:
                (default_flags,) = struct.unpack_from(">I", data, position)
        elif box.kind == b"tfdt":
            version = data[box.body]
            decode = struct.unpack_from(">Q" if version == 1 else ">I", data, box.body + 4)[0]
        elif box.kind == b"trun":
            version = data[box.body]
            flags = int.from_bytes(data[box.body + 1 : box.body + 4], "big")
            (count,) = struct.unpack_from(">I", data, box.body + 4)
            position = box.body + 8
            if flags & _DATA_OFFSET:
                position += 4
            first_flags = None
            if flags & _FIRST_SAMPLE_FLAGS:
                (first_flags,) = struct.unpack_from(">I", data, position)
                position += 4
            for number in range(count):
                duration, size, sample_flags, offset = default_duration, default_size, default_flags, 0
                if flags & _SAMPLE_DURATION:
                    (duration,) = struct.unpack_from(">I", data, position)
                    position += 4
                if flags & _SAMPLE_SIZE:
                    (size,) = struct.unpack_from(">I", data, position)
                    position += 4
                if flags & _SAMPLE_FLAGS:
                    (sample_flags,) = struct.unpack_from(">I", data, position)
                    position += 4
                elif number == 0 and first_flags is not None:
                    sample_flags = first_flags
                if flags & _SAMPLE_CTO:
                    (offset,) = struct.unpack_from(">i" if version == 1 else ">I", data, position)
                    position += 4
                samples.append(Sample(decode, duration, size, offset, not sample_flags & _NON_SYNC))
                decode += duration
    return samples


def codec_string(init: bytes) -> str:
    """RFC 6381 CODECS value from the sample entry: avc1.PPCCLL or mp4a.40.N."""
    stsd = find(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    if stsd is None:
        raise Fmp4Error("no stsd box")
    entry = boxes(init, stsd.body + 8, stsd.end)[0]
    if entry.kind in (b"avc1", b"avc3"):
        # VisualSampleEntry: 8 (SampleEntry) + 70 bytes before its child boxes.
        avcc = find(init, [b"avcC"], entry.body + 78, entry.end)
        if avcc is None:
            raise Fmp4Error("no avcC box")
        profile, constraints, level = init[avcc.body + 1 : avcc.body + 4]
        return f"{entry.kind.decode()}.{profile:02x}{constraints:02x}{level:02x}"
    if entry.kind == b"mp4a":
        esds = find(init, [b"esds"], entry.body + 28, entry.end)
        object_type = _audio_object_type(init[esds.body + 4 : esds.end]) if esds else 2
        return f"mp4a.40.{object_type}"
    return entry.kind.decode(errors="replace")


def _audio_object_type(descriptor: bytes) -> int:
    """The AAC audio object type: the first 5 bits of the DecoderSpecificInfo (tag 5)."""
    position = 0
    while position < len(descriptor):
        tag = descriptor[position]
        position += 1
        length = 0
        for _ in range(4):
            byte = descriptor[position]
            position += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x03:  # ES_Descriptor: ES_ID, flags, then its children
            position += 3
            continue
        if tag == 0x04:  # DecoderConfigDescriptor: 13 bytes, then DecoderSpecificInfo
            position += 13
            continue
        if tag == 0x05:
            return descriptor[position] >> 3
        position += length
    return 2


def read_track(path: Path) -> Track:
    return parse(path.read_bytes())
