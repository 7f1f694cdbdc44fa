"""Asks flow-store's grpc.health.v1.Health with Python's standard client (grpcio-health-checking).

    python health_check.py HOST:PORT            # Check, one per line of stdin
    python health_check.py HOST:PORT --watch    # Watch the whole server's status

Check: for each line read on stdin (a service name; empty for the whole server) it prints one
line: the ServingStatus name (SERVING, NOT_SERVING, ...) or "ERROR <grpc code>".
Watch: prints each status the server sends, then "END <grpc code>" when the stream ends.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    stub = health_pb2_grpc.HealthStub(channel)
    if sys.argv[2:] == ["--watch"]:
        watch(stub)
        return
    for line in sys.stdin:
        request = health_pb2.HealthCheckRequest(service=line.strip())
        try:
            reply = stub.Check(request, timeout=5)
            answer = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as error:
            answer = f"ERROR {error.code().name}"
        print(answer, flush=True)


def watch(stub) -> None:
    name = health_pb2.HealthCheckResponse.ServingStatus.Name
    try:
        for reply in stub.Watch(health_pb2.HealthCheckRequest(service="")):
            print(name(reply.status), flush=True)
        print("END OK", flush=True)
    except grpc.RpcError as error:
        print(f"END {error.code().name}", flush=True)


if __name__ == "__main__":
    main()
