"""Where an H.264 or H.265 access unit (a picture and what goes with it) begins, from a NAL unit's first bytes: what
FFmpeg's parsers look for, asked here by the live readers that go without them (rtp_video.py, ts_video.py)."""

from __future__ import annotations

# H.264 NAL unit types that begin an access unit (ITU-T H.264 7.4.1.2.3): SEI, SPS, PPS, AUD, 14-18; a slice (1, 5)
# does when it is its picture's first (first_mb_in_slice 0).
_H264_AU_START = {6, 7, 8, 9, 14, 15, 16, 17, 18}
# H.265's (ITU-T H.265 7.4.2.4.4): VPS, SPS, PPS, AUD, prefix SEI, 41-44, 48-55; a slice (0-31) when it is its
# picture's first.
_HEVC_AU_START = {32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)}


def hevc_slice(nal: bytes) -> bool:
    """Whether an H.265 NAL unit (without its start code) is a slice (a VCL unit, types 0-31)."""
    return len(nal) > 2 and (nal[0] >> 1) & 0x3F < 32


def first_slice(nal: bytes, codec: str) -> bool:
    """Whether a slice (without its start code) is its picture's first: H.264's first_mb_in_slice is 0 (ue(v) 0 is
    a lone 1 bit), H.265's first_slice_segment_in_pic_flag is 1."""
    at = 1 if codec == "h264" else 2
    return len(nal) > at and bool(nal[at] & 0x80)


def begins_access_unit(nal: bytes, codec: str) -> bool:
    """Whether this NAL unit (without its start code) of an H.264 ("h264") or H.265 ("hevc") stream begins an access
    unit."""
    if not nal:
        return False
    if codec == "h264":
        kind = nal[0] & 0x1F
        return kind in _H264_AU_START or (kind in (1, 5) and first_slice(nal, codec))
    kind = (nal[0] >> 1) & 0x3F
    return kind in _HEVC_AU_START or (hevc_slice(nal) and first_slice(nal, codec))
