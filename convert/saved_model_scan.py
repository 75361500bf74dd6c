"""What a SavedModel's graph would do besides arithmetic, read without TensorFlow: a SavedModel is a program.

Loading a SavedModel and calling its signature runs its graph, and a graph can read and write files
(ReadFile, WriteFile, PrintV2 to a file, summary writers, datasets), run Python (PyFunc) or talk to the network
(RPC, debugger streams). `convert --eval` ran one that read /etc/hostname and wrote a file. So, like a Lambda
layer in a .keras file, such a graph is refused unless the user passes `--unsafe-load`.

`saved_model.pb` is parsed here from the protobuf wire format (a few message fields: graph nodes, the function
library, the saver), so the check costs no TensorFlow import and runs before anything is loaded. Checkpoint
ops (SaveV2, RestoreV2, ...) are in every SavedModel, in the functions its saver names; they are accepted
there and only there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Set, Tuple

#: Ops that touch files, processes or the network. Matched on the op name; any op of a `*Reader*`,
#: `*Summary*` or `*Dataset*` family that reads files is listed, since a pattern would also catch harmless ops.
UNSAFE_OPS = frozenset({
    # files
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "ImmutableConst", "LoadAndRemapMatrix",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "LMDBReader", "IdentityReader",
    "IdentityReaderV2", "ReaderReadV2", "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "ExperimentalLMDBDataset", "LMDBDataset",
    "ExperimentalSqlDataset", "SqlDataset", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
    "LoadDataset", "SaveDataset", "SaveDatasetV2", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "SnapshotDataset", "SnapshotDatasetV2", "CacheDataset", "CacheDatasetV2", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "PrintV2", "WriteSummary", "WriteRawProtoSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary", "ImportEvent",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "SummaryWriter", "FlushSummaryWriter",
    "CloseSummaryWriter", "DecodeProtoV2", "EncodeProto",
    # processes and Python
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    # network and debugger streams (these can also write to file:// URLs)
    "Rpc", "TryRpc", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2", "GcsConfigureCredentials", "GcsConfigureBlockCache",
    "BigQueryReader", "GenerateBigQueryReaderPartitions", "DataServiceDataset", "DataServiceDatasetV2",
    "DataServiceDatasetV3", "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2",
    "DistributedSave", "CollectiveReduce", "CollectiveReduceV2", "CollectiveReduceV3", "CollectiveGather",
    "CollectiveGatherV2", "CollectiveBcastSend", "CollectiveBcastRecv", "CollectiveBcastSendV2",
    "CollectiveBcastRecvV2", "CollectiveAllToAllV2", "CollectiveAllToAllV3",
})
#: Ops that save and restore variables: every SavedModel has them, in its saver's functions.
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices", "Restore",
                            "RestoreSlice"})


class GraphFormatError(ValueError):
    """saved_model.pb is not a SavedModel protobuf."""


@dataclass
class _Graph:
    """What the check needs of one MetaGraphDef."""

    nodes: List[Tuple[str, str, Set[str]]] = field(default_factory=list)  # (node name, op, functions called)
    functions: Dict[str, List[Tuple[str, Set[str]]]] = field(default_factory=dict)  # name -> [(op, called)]
    saver_nodes: Set[str] = field(default_factory=set)


def unsafe_operations(saved_model_pb: bytes) -> List[str]:
    """Sorted names of the file, process and network ops in the graph (checkpoint ops outside the saver too)."""
    found: Set[str] = set()
    for graph in _meta_graphs(saved_model_pb):
        found |= _unsafe_in(graph)
    return sorted(found)


def _unsafe_in(graph: _Graph) -> Set[str]:
    saver_scopes = {name.split("/", 1)[0] + "/" for name in graph.saver_nodes if "/" in name}
    called_by_saver = _reachable(graph, [c for n, _, c in graph.nodes if n in graph.saver_nodes])
    called_by_rest = _reachable(graph, [c for n, _, c in graph.nodes if n not in graph.saver_nodes])
    saver_only = called_by_saver - called_by_rest
    found = set()
    for name, op, _ in graph.nodes:
        in_saver = name in graph.saver_nodes or any(name.startswith(s) for s in saver_scopes)  # TF1 savers
        if op in UNSAFE_OPS or (op in CHECKPOINT_OPS and not in_saver):
            found.add(op)
    for fname, body in graph.functions.items():
        for op, _ in body:
            if op in UNSAFE_OPS or (op in CHECKPOINT_OPS and fname not in saver_only):
                found.add(op)
    return found


def _reachable(graph: _Graph, roots: List[Set[str]]) -> Set[str]:
    """Functions called, directly or through other functions, from the given call sets."""
    seen: Set[str] = set()
    todo = [f for called in roots for f in called]
    while todo:
        name = todo.pop()
        if name in seen or name not in graph.functions:
            continue
        seen.add(name)
        todo.extend(f for _, called in graph.functions[name] for f in called)
    return seen


# --- protobuf wire format --------------------------------------------------------------------------------
def _varint(buf: memoryview, i: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise GraphFormatError("a varint runs past the end")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[Tuple[int, object]]:
    """(field number, value) of a message: ints for varints, memoryviews for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise GraphFormatError("a field runs past the end")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            value = None
        else:
            raise GraphFormatError(f"unsupported wire type {wire}")
        yield number, value


def _text(value) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def _meta_graphs(data: bytes) -> Iterator[_Graph]:
    for number, value in _fields(memoryview(data)):
        if number == 2 and isinstance(value, memoryview):  # SavedModel.meta_graphs
            yield _meta_graph(value)


def _meta_graph(buf: memoryview) -> _Graph:
    graph = _Graph()
    for number, value in _fields(buf):
        if number == 2:  # MetaGraphDef.graph_def
            _graph_def(value, graph)
        elif number == 3:  # MetaGraphDef.saver_def: save_tensor_name (2), restore_op_name (3)
            graph.saver_nodes |= {_text(v).split(":")[0].lstrip("^") for n, v in _fields(value) if n in (2, 3)}
    return graph


def _graph_def(buf: memoryview, graph: _Graph) -> None:
    for number, value in _fields(buf):
        if number == 1:  # GraphDef.node
            graph.nodes.append(_node(value))
        elif number == 2:  # GraphDef.library
            for n, function in _fields(value):
                if n == 1:  # FunctionDefLibrary.function
                    name, body = _function(function)
                    graph.functions[name] = body
    # A node whose op is a library function calls it.
    graph.nodes = [(n, op, called | ({op} & graph.functions.keys())) for n, op, called in graph.nodes]
    graph.functions = {f: [(op, called | ({op} & graph.functions.keys())) for op, called in body]
                       for f, body in graph.functions.items()}


def _node(buf: memoryview) -> Tuple[str, str, Set[str]]:
    name, op, called = "", "", set()
    for number, value in _fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:
            op = _text(value)
        elif number == 5:  # attr map entry: key (1), AttrValue (2)
            for n, attr in _fields(value):
                if n == 2:
                    called |= _functions_in_attr(attr)
    return name, op, called


def _functions_in_attr(buf: memoryview) -> Set[str]:
    """Function names in an AttrValue: `func` (10) or a list (1) of funcs (9); NameAttrList.name is field 1."""
    out = set()
    for number, value in _fields(buf):
        if number == 10:
            out |= {_text(v) for n, v in _fields(value) if n == 1}
        elif number == 1:
            for n, item in _fields(value):
                if n == 9:
                    out |= {_text(v) for k, v in _fields(item) if k == 1}
    return out


def _function(buf: memoryview) -> Tuple[str, List[Tuple[str, Set[str]]]]:
    name, body = "", []
    for number, value in _fields(buf):
        if number == 1:  # FunctionDef.signature (an OpDef: its name is field 1)
            name = next((_text(v) for n, v in _fields(value) if n == 1), name)
        elif number == 3:  # FunctionDef.node_def
            _, op, called = _node(value)
            body.append((op, called))
    return name, body
