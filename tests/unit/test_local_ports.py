"""A local Spark job listens on this machine only: every TCP port its JVM opens is on the loopback
address (driver RPC, block manager, Py4J), and the setting is there to widen it for cluster use."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR, load_config

TCP_LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host, little-endian, order); an IPv4
    address mapped into IPv6 (::ffff:127.0.0.1, how Java listens) as the IPv4 one."""
    raw = bytes.fromhex(hex_address)
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return getattr(address, "ipv4_mapped", None) or address


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in inodes:
                address, port = local.split(":")
                found.append((str(_address(address)), int(port, 16)))
    return found


def test_a_local_job_listens_on_loopback_only(spark) -> None:
    assert spark.range(1000).selectExpr("sum(id)").first()[0] == 499500  # a job ran: every service is up
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    sockets = listening_sockets(pid)
    assert len(sockets) >= 2, sockets  # at least the driver's RPC and block manager ports (and Py4J)
    assert all(ipaddress.ip_address(address).is_loopback for address, _ in sockets), sockets
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"


def test_bind_address_is_a_setting() -> None:
    cfg = load_config(PROJECT_DIR / "config.ini", env={"LAKEHOUSE_SPARK_BIND_ADDRESS": ""})
    assert cfg.spark.bind_address is None  # empty: Spark's default, for a cluster
    assert load_config(PROJECT_DIR / "config.ini", env={}).spark.bind_address == "127.0.0.1"
