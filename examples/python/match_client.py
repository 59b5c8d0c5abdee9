#!/usr/bin/env python3
"""Match hashes against a hashfed node over mutual TLS, from Python.

Proves that a node's match service can be called from any language with a
gRPC stack: the stubs are generated at run time from the repository's
proto/ with grpc_tools.protoc (nothing generated is committed), then
hashfed.v1.Match/MatchHashes is called with the hashes given on the command
line.

    python3 match_client.py --target 127.0.0.1:7702 \
        --ca node/tls/node-ca.pem --cert svc.pem --key svc.key \
        [--radius N] [--type pdq|md5|sha1|sha256|blake3] HASH...

Each HASH is hex (64 digits for PDQ) and may carry its own type as
TYPE:HEX (e.g. md5:d41d8cd98f00b204e9800998ecf8427e); --type sets the type
of the bare ones (default pdq). --radius applies to the PDQ queries only.

Prints one JSON object per query, in order:

    {"query": 0, "type": "pdq", "hash": "...", "hits": [{"entry_id": ...,
     "set": ..., "origin": ..., "type": ..., "distance": ..., "variant": ...,
     "labels": [...]}]}

with "skipped": REASON when the node did not match that query, and
"external_id" / "match_id" in a hit when the node sends them.
Exit code: 0 if anything matched, 1 if nothing did, 2 on any error.
"""

import argparse
import importlib
import json
import os
import pathlib
import sys
import tempfile

PROG = "match_client"

# Bytes of each hash type; the wire enum names are SIGNAL_TYPE_<NAME>.
SIZES = {"pdq": 32, "md5": 16, "sha1": 20, "sha256": 32, "blake3": 32}

DEFAULT_PROTO = pathlib.Path(__file__).resolve().parents[2] / "proto"


class Failure(Exception):
    """An error reported on stderr with exit code 2."""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Match hashes against a hashfed node (hashfed.v1.Match/MatchHashes).",
    )
    p.add_argument("--target", required=True, metavar="HOST:PORT",
                   help="the node's match listener")
    p.add_argument("--ca", required=True, metavar="PEM",
                   help="the node's CA certificate (DIR/tls/node-ca.pem)")
    p.add_argument("--cert", required=True, metavar="PEM",
                   help="client certificate from `hashfed client issue`")
    p.add_argument("--key", required=True, metavar="KEY",
                   help="its private key")
    p.add_argument("--radius", type=int, metavar="N",
                   help="PDQ radius 0-128 (default: each set's threshold)")
    p.add_argument("--type", default="pdq", choices=sorted(SIZES),
                   help="type of hashes given without a TYPE: prefix (default pdq)")
    p.add_argument("--server-name", default="localhost", metavar="NAME",
                   help="name to check the node's certificate against "
                        "(default localhost, which every node certificate carries)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="deadline of the call (default 10)")
    p.add_argument("--proto-dir", default=str(DEFAULT_PROTO), metavar="DIR",
                   help="where hashfed/v1/*.proto are (default: the repository's proto/)")
    p.add_argument("--gen-dir", metavar="DIR",
                   help="write the generated stubs here (default: a temporary directory)")
    p.add_argument("hashes", nargs="+", metavar="HASH",
                   help="hex hash, or TYPE:HEX")
    args = p.parse_args(argv)
    if args.radius is not None and not 0 <= args.radius <= 128:
        p.error("--radius must be 0 to 128")
    return args


def parse_hash(text, default_type):
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = default_type, text
    kind = kind.lower()
    if kind not in SIZES:
        raise Failure(f"{text!r}: unknown hash type {kind!r} (one of {', '.join(sorted(SIZES))})")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise Failure(f"{text!r}: not hexadecimal") from None
    if len(raw) != SIZES[kind]:
        raise Failure(f"{text!r}: a {kind} hash is {2 * SIZES[kind]} hex digits, got {len(value)}")
    return kind, raw


def generate_stubs(proto_dir, out_dir):
    """Compiles hashfed/v1/*.proto into out_dir and imports the modules."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise Failure("grpcio-tools is not installed (pip install -r requirements.txt)") from None
    proto_dir = pathlib.Path(proto_dir)
    files = sorted(str(f.relative_to(proto_dir)) for f in proto_dir.glob("hashfed/v1/*.proto"))
    if not files:
        raise Failure(f"no hashfed/v1/*.proto under {proto_dir} (see --proto-dir)")
    well_known = pathlib.Path(protoc.__file__).resolve().parent / "_proto"
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ])
    if code != 0:
        raise Failure(f"protoc failed on {proto_dir} (exit {code})")
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    pb2 = importlib.import_module("hashfed.v1.match_pb2")
    grpc_pb2 = importlib.import_module("hashfed.v1.match_pb2_grpc")
    signal_pb2 = importlib.import_module("hashfed.v1.signal_pb2")
    return pb2, grpc_pb2, signal_pb2


def read(path, what, marker):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Failure(f"reading the {what} {path}: {e.strerror}") from None
    if marker not in data:
        raise Failure(f"the {what} {path} is not PEM (no {marker.decode()!r})")
    return data


def run(args, gen_dir):
    import grpc

    queries = [parse_hash(h, args.type) for h in args.hashes]
    ca = read(args.ca, "node CA", b"BEGIN CERTIFICATE")
    cert = read(args.cert, "client certificate", b"BEGIN CERTIFICATE")
    key = read(args.key, "client key", b"PRIVATE KEY")
    pb2, grpc_pb2, signal_pb2 = generate_stubs(args.proto_dir, gen_dir)

    request = pb2.MatchRequest()
    for kind, raw in queries:
        q = request.queries.add()
        q.signal.type = signal_pb2.SignalType.Value(f"SIGNAL_TYPE_{kind.upper()}")
        q.signal.value = raw
        # The node refuses a radius on exact hashes.
        if kind == "pdq" and args.radius is not None:
            q.radius = args.radius

    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    with grpc.secure_channel(args.target, creds, options=options) as channel:
        stub = grpc_pb2.MatchStub(channel)
        try:
            response = stub.MatchHashes(request, timeout=args.timeout)
        except grpc.RpcError as e:
            raise Failure(
                f"MatchHashes on {args.target} failed: {e.code().name}: {e.details()}") from None

    if len(response.results) != len(queries):
        raise Failure(f"the node answered {len(response.results)} results for {len(queries)} queries")
    names = {v: k for k, v in signal_pb2.SignalType.items()}
    hit_fields = pb2.Hit.DESCRIPTOR.fields_by_name

    def hit(h):
        out = {
            "entry_id": h.entry_id,
            "set": h.set,
            "origin": h.origin,
            "type": names.get(h.type, str(h.type)).removeprefix("SIGNAL_TYPE_").lower(),
            "distance": h.distance,
            "variant": h.variant,
            "labels": list(h.labels),
        }
        # Fields newer schemas carry, when the node fills them in.
        for name in ("external_id", "match_id"):
            if name in hit_fields and getattr(h, name):
                out[name] = getattr(h, name)
        return out

    matched = False
    for i, ((kind, raw), result) in enumerate(zip(queries, response.results)):
        line = {"query": i, "type": kind, "hash": raw.hex(), "hits": [hit(h) for h in result.hits]}
        if result.skipped:
            line["skipped"] = result.skipped
        matched |= bool(result.hits)
        print(json.dumps(line), flush=True)
    return 0 if matched else 1


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # gRPC core's own log lines (e.g. TLS alerts) would bury the one-line
    # error below; GRPC_VERBOSITY=ERROR in the environment brings them back.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        import grpc  # noqa: F401
    except ImportError:
        print(f"{PROG}: grpcio is not installed (pip install -r requirements.txt)", file=sys.stderr)
        return 2
    try:
        if args.gen_dir:
            pathlib.Path(args.gen_dir).mkdir(parents=True, exist_ok=True)
            return run(args, args.gen_dir)
        with tempfile.TemporaryDirectory(prefix="hashfed-stubs-") as gen_dir:
            return run(args, gen_dir)
    except Failure as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # anything unforeseen is an error too, never "no match"
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
