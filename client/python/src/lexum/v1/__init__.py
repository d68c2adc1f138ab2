"""Generated protobuf and gRPC modules of the Lexum wire protocol, version 1.

Made by `tools/generate_proto.py` from `proto/lexum/v1/*.proto`; do not edit.
"""
