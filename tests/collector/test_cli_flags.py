"""Numeric flags and their INFERSIGHT_* variables: typed when valid, and a one-line error
naming the flag when not (never a traceback, never a silent substitute)."""

from __future__ import annotations

import pytest

from infersight_collector.cli import build_parser


def parse(argv: list[str]):
    return build_parser().parse_args(argv)


def test_defaults_and_variables_are_typed(monkeypatch):
    monkeypatch.delenv("INFERSIGHT_DECODE_WORKERS", raising=False)
    monkeypatch.setenv("INFERSIGHT_TTL_DAYS", "7")
    monkeypatch.setenv("INFERSIGHT_ALERT_INTERVAL", "2.5")
    args = parse(["collector"])
    assert (args.ttl_days, args.alert_interval, args.grpc_port) == (7, 2.5, 4317)
    assert args.insert_lanes == 1 and args.decode_workers is None
    monkeypatch.setenv("INFERSIGHT_DECODE_WORKERS", "0")
    assert parse(["collector", "--insert-lanes", "2"]).decode_workers == 0
    assert parse(["collector", "--grpc-port", "0"]).grpc_port == 0  # any free port


def test_string_flags_default_to_their_variables(monkeypatch):
    variables = {"INFERSIGHT_DATA_DIR": "/srv/spans", "CLICKHOUSE_URL": "http://ch:8123",
                 "INFERSIGHT_API_KEYS_FILE": "/etc/keys", "INFERSIGHT_TLS_CERT": "c.pem",
                 "INFERSIGHT_TLS_KEY": "k.pem", "INFERSIGHT_HOST": "127.0.0.1",
                 "INFERSIGHT_SPOOL_DIR": "/var/spool/infersight"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    args = parse(["collector"])
    assert (args.data_dir, args.clickhouse_url, args.api_keys_file, args.tls_cert,
            args.tls_key, args.host, args.spool_dir) == tuple(variables.values())
    for name in variables:
        monkeypatch.delenv(name)
    args = parse(["collector"])
    assert (args.data_dir, args.api_keys_file, args.host) == (".infersight", "", "0.0.0.0")


@pytest.mark.parametrize("argv, env, message", [
    (["collector", "--insert-lanes", "0"], {}, "argument --insert-lanes: '0': must be at least 1"),
    (["collector", "--grpc-port", "70000"], {},
     "argument --grpc-port: '70000': must be from 0 to 65535"),
    (["collector", "--decode-workers", "-1"], {}, "argument --decode-workers: '-1'"),
    (["collector"], {"INFERSIGHT_TTL_DAYS": "abc"},
     "argument --ttl-days: 'abc' is not a whole number"),
    (["collector"], {"INFERSIGHT_SPOOL_MAX_BYTES": "0"}, "argument --spool-max-bytes: '0'"),
    (["collector"], {"INFERSIGHT_ALERT_INTERVAL": "0"},
     "argument --alert-interval: '0': must be above 0"),
    (["loadgen", "--rate", "nan"], {}, "argument --rate: 'nan' is not a number"),
    (["loadgen", "--duration", "inf"], {}, "argument --duration: 'inf' is not a number"),
    (["loadgen", "--spans-per-request", "0"], {}, "argument --spans-per-request: '0'"),
])
def test_out_of_range_numbers_stop_with_a_line_naming_the_flag(argv, env, message, monkeypatch,
                                                                capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        parse(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
