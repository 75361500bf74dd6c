"""The standard TFLite metadata codec (edge_runtime/tflite_metadata.py): ModelMetadata flatbuffers written and
read back, Google's reference model decoded, and associated files read with a size cap that damaged or hostile
zips cannot get past."""

from __future__ import annotations

import io
import random
import struct
import time
import tracemalloc
import zipfile
import zlib

import pytest

from edgevision.edge_runtime import tflite_metadata as tm
from edgevision.edge_runtime.metadata import metadata_entries
from edgevision.errors import ModelError, UsageError

GIB = 1024 ** 3


def f32(values):
    """What a float survives as in a flatbuffer [float] vector."""
    return tuple(struct.unpack("<f", struct.pack("<f", v))[0] for v in values)


def tflite_with_entries(entries: dict) -> bytes:
    """A TFL3 flatbuffer holding only buffers and a metadata list (name -> bytes): what metadata_entries reads.

    Slots of tensorflow/lite/schema/schema.fbs: Model.version 0, Model.buffers 4, Model.metadata 6,
    Buffer.data 0, Metadata.name 0, Metadata.buffer 1."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    buffer_offsets = []
    for payload in [b""] + list(entries.values()):  # buffer 0 is the empty sentinel, as converters write it
        data = b.CreateByteVector(payload) if payload else None
        b.StartObject(3)
        if data is not None:
            b.PrependUOffsetTRelativeSlot(0, data, 0)
        buffer_offsets.append(b.EndObject())
    meta_offsets = []
    for i, name in enumerate(entries, start=1):
        text = b.CreateString(name)
        b.StartObject(2)
        b.PrependUint32Slot(1, i, 0)
        b.PrependUOffsetTRelativeSlot(0, text, 0)
        meta_offsets.append(b.EndObject())
    vectors = []
    for offsets in (buffer_offsets, meta_offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        vectors.append(b.EndVector())
    b.StartObject(7)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(4, vectors[0], 0)
    b.PrependUOffsetTRelativeSlot(6, vectors[1], 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


def one_member_zip(prefix: bytes, name: str, stored: bytes, declared_size: int, crc: int,
                   method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """`prefix` + a zip of one member whose header says what the caller wants, true or not (offsets from
    the start of the file, as tflite-support writes them)."""
    raw = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(stored), declared_size,
                        len(raw), 0)
    header_offset = len(prefix)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(stored),
                          declared_size, len(raw), 0, 0, 0, 0, 0o600 << 16, header_offset) + raw
    cd_offset = header_offset + len(local) + len(raw) + len(stored)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), cd_offset, 0)
    return prefix + local + raw + stored + central + end


def deflated_zeros(total: int) -> bytes:
    """A raw deflate stream of `total` zero bytes, built without compressing them all: after a full flush
    a block needs nothing before it, so one compressed MiB can be repeated."""
    chunk = 1024 * 1024
    assert total % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty last block
    return segment * (total // chunk) + final


@pytest.fixture(scope="module")
def plain_model() -> bytes:
    """A TFL3 file with edgevision's JSON entry only: no standard metadata, no zip."""
    return tflite_with_entries({"edgevision": b'{"format": "edgevision.model/1"}'})


def classifier_meta(**changes) -> tm.StandardMetadata:
    fields = dict(name="cifar10-cnn", description="A CIFAR-10 classifier", version="3", author="edgevision",
                  license="Apache-2.0", input_name="image", input_description="32x32 pixels", color_space="RGB",
                  mean=(125.3, 122.95, 113.87), std=(62.99, 62.09, 66.7), input_min=(0.0,), input_max=(255.0,),
                  output_name="probability", output_description="one score per class", labels_file="labels.txt",
                  output_min=(0.0,), output_max=(1.0,), min_parser_version="1.0.0")
    fields.update(changes)
    return tm.StandardMetadata(**fields)


def assert_same(decoded: tm.StandardMetadata, meta: tm.StandardMetadata):
    floats = ("mean", "std", "input_min", "input_max", "output_min", "output_max")
    for field in tm.StandardMetadata.__dataclass_fields__:
        expected = getattr(meta, field)
        expected = f32(expected) if field in floats else expected
        assert getattr(decoded, field) == expected, field


# --- the ModelMetadata flatbuffer ------------------------------------------------------------------------


@pytest.mark.parametrize("mean,std", [((125.3, 122.95, 113.87), (62.99, 62.09, 66.7)), ((127.5,), (127.5,))])
def test_round_trip_keeps_every_field(mean, std):
    meta = classifier_meta(mean=mean, std=std)
    buf = tm.encode_model_metadata(meta)
    assert buf[4:8] == b"M001"
    assert_same(tm.decode_model_metadata(buf), meta)


def test_round_trip_of_a_sparse_description():
    """Empty strings, no normalisation, no stats and no labels file are left out and read back as such."""
    meta = tm.StandardMetadata(name="bare", color_space="GRAYSCALE")
    decoded = tm.decode_model_metadata(tm.encode_model_metadata(meta))
    assert decoded == meta
    assert decoded.mean == () and decoded.labels_file is None and decoded.license == ""


def test_bgr_is_written_as_unknown_so_standard_readers_refuse_it():
    """The schema has no BGR; claiming RGB would have standard readers feed swapped channels."""
    decoded = tm.decode_model_metadata(tm.encode_model_metadata(classifier_meta(color_space="BGR")))
    assert decoded.color_space == "UNKNOWN"


def test_entry_in_a_model_is_found_and_absent_gives_none(plain_model):
    assert tm.read_standard_metadata(plain_model) is None
    meta = classifier_meta()
    model = tflite_with_entries({"edgevision": b"{}", tm.METADATA_ENTRY_NAME: tm.encode_model_metadata(meta)})
    assert set(metadata_entries(model)) == {"edgevision", "TFLITE_METADATA"}
    assert_same(tm.read_standard_metadata(model), meta)


def test_not_a_model_is_refused():
    with pytest.raises(ModelError, match="TFL3"):
        tm.read_standard_metadata(b"\x00" * 64)


@pytest.mark.parametrize("bad", [{"mean": (1.0, 2.0), "std": (1.0, 2.0)}, {"mean": (1.0,), "std": (1.0, 1.0, 1.0)},
                                 {"mean": (0.0,), "std": (0.0,)}, {"color_space": "YUV"}, {"mean": ("a",)}])
def test_invalid_descriptions_are_refused(bad):
    with pytest.raises(UsageError):
        classifier_meta(**bad)


def test_wrong_identifier_is_a_model_error():
    buf = bytearray(tm.encode_model_metadata(classifier_meta()))
    buf[4:8] = b"TFL3"
    with pytest.raises(ModelError, match="M001"):
        tm.decode_model_metadata(bytes(buf))
    with pytest.raises(ModelError, match="M001"):
        tm.decode_model_metadata(b"M0")


def test_corrupt_offsets_are_a_model_error():
    buf = bytearray(tm.encode_model_metadata(classifier_meta()))
    broken = bytes(struct.pack("<I", len(buf) * 4)) + bytes(buf[4:])  # root table far past the end
    with pytest.raises(ModelError, match="corrupt"):
        tm.decode_model_metadata(broken)


def test_every_truncation_is_a_model_error():
    """The builder writes children after their parents, so any cut loses something the root points at."""
    buf = tm.encode_model_metadata(classifier_meta())
    for n in range(8, len(buf)):
        with pytest.raises(ModelError):
            tm.decode_model_metadata(buf[:n])


def test_damaged_bytes_give_a_result_or_a_model_error_never_a_crash():
    buf = tm.encode_model_metadata(classifier_meta())
    rng = random.Random(17)
    outcomes = set()
    for _ in range(500):
        copy = bytearray(buf)
        for _ in range(rng.randint(1, 4)):
            copy[rng.randrange(8, len(copy))] = rng.randrange(256)
        try:
            outcomes.add(type(tm.decode_model_metadata(bytes(copy))))
        except ModelError:
            outcomes.add(ModelError)
    assert outcomes == {tm.StandardMetadata, ModelError}  # anything else propagates and fails the test


# --- Google's reference model ----------------------------------------------------------------------------


@pytest.mark.shared
def test_reference_model_decodes(reference_model):
    data = reference_model.read_bytes()
    meta = tm.read_standard_metadata(data)
    assert meta.mean == (127.5,) and meta.std == (127.5,)
    assert meta.color_space == "RGB"
    assert meta.labels_file == "imagenet_labels.txt"
    assert meta.input_min == (0.0,) and meta.input_max == (255.0,)
    assert meta.min_parser_version == "1.0.0"
    assert tm.associated_file_names(data) == ["imagenet_labels.txt"]
    labels = tm.read_associated_file(data, meta.labels_file).decode("utf-8").splitlines()
    assert len(labels) == 1001 and labels[0] == "background"  # 1000 ImageNet classes, background first


@pytest.mark.shared
def test_reference_model_labels_are_capped(reference_model):
    data = reference_model.read_bytes()
    size = zipfile.ZipFile(reference_model).getinfo("imagenet_labels.txt").file_size
    assert len(tm.read_associated_file(data, "imagenet_labels.txt", max_bytes=size)) == size
    with pytest.raises(ModelError, match="declares"):
        tm.read_associated_file(data, "imagenet_labels.txt", max_bytes=size - 1)


# --- associated files ------------------------------------------------------------------------------------


def test_packed_files_sit_where_tflite_support_puts_them(plain_model):
    labels = b"airplane\nautomobile\nbird\n"
    model = tm.pack_associated_files(plain_model, {"labels.txt": labels, "readme.txt": b"hello"})
    assert model[: len(plain_model)] == plain_model  # the flatbuffer is untouched; the zip follows it
    assert metadata_entries(model) == metadata_entries(plain_model)
    with zipfile.ZipFile(io.BytesIO(model)) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED  # the C++ extractor refuses compressed members
            # offsets count from the start of the file, not of the zip
            assert model[info.header_offset: info.header_offset + 4] == b"PK\x03\x04"
            assert info.header_offset >= len(plain_model)
    assert tm.associated_file_names(model) == ["labels.txt", "readme.txt"]
    assert tm.read_associated_file(model, "labels.txt") == labels
    assert tm.pack_associated_files(plain_model, {"labels.txt": labels, "readme.txt": b"hello"}) == model


def test_packing_adds_to_an_existing_zip_but_not_twice(plain_model):
    model = tm.pack_associated_files(plain_model, {"labels.txt": b"a\nb\n"})
    model = tm.pack_associated_files(model, {"extra.txt": b"x"})
    assert tm.associated_file_names(model) == ["labels.txt", "extra.txt"]
    assert tm.read_associated_file(model, "labels.txt") == b"a\nb\n"
    with pytest.raises(UsageError, match="already packs"):
        tm.pack_associated_files(model, {"labels.txt": b"c\n"})
    with pytest.raises(UsageError, match="plain file name"):
        tm.pack_associated_files(plain_model, {"dir/labels.txt": b"c\n"})


def test_missing_member_or_no_zip_gives_none(plain_model):
    assert tm.read_associated_file(plain_model, "labels.txt") is None
    assert tm.associated_file_names(plain_model) == []
    model = tm.pack_associated_files(plain_model, {"labels.txt": b"a\n"})
    assert tm.read_associated_file(model, "other.txt") is None


def test_deflated_members_from_other_tools_are_read(plain_model):
    text = b"cat\ndog\n" * 500
    packed = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stored = packed.compress(text) + packed.flush()
    model = one_member_zip(plain_model, "labels.txt", stored, len(text), zlib.crc32(text))
    assert tm.read_associated_file(model, "labels.txt") == text


@pytest.mark.parametrize("declared, crc, message", [
    (2 * GIB, 0, "declares 2147483648 bytes"),  # an honest header: refused before inflating
    # A lying header: it claims 1,000 zeros (with their true checksum); the member inflates to 2 GiB.
    (1000, zlib.crc32(bytes(1000)), "more or less than the 1000 bytes"),
], ids=["zip-bomb", "lying-header"])
def test_a_huge_member_is_refused_fast_and_small(plain_model, declared, crc, message):
    model = one_member_zip(plain_model, "labels.txt", deflated_zeros(2 * GIB), declared, crc)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ModelError, match=message):
        tm.read_associated_file(model, "labels.txt")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 16 * 1024 * 1024


def test_short_or_damaged_members_are_refused(plain_model):
    text = b"a\nb\nc\n"
    short = one_member_zip(plain_model, "labels.txt", text, 100, zlib.crc32(text), method=zipfile.ZIP_STORED)
    with pytest.raises(ModelError, match="more or less"):
        tm.read_associated_file(short, "labels.txt")
    bad_crc = one_member_zip(plain_model, "labels.txt", text, len(text), zlib.crc32(text) ^ 1,
                             method=zipfile.ZIP_STORED)
    with pytest.raises(ModelError, match="checksum"):
        tm.read_associated_file(bad_crc, "labels.txt")
    garbage = one_member_zip(plain_model, "labels.txt", b"\xff" * 20, 20, 0)
    with pytest.raises(ModelError, match="damaged"):
        tm.read_associated_file(garbage, "labels.txt")
