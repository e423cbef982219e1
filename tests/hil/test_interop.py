"""The agent against Modbus servers the project did not write, and a foreign client against vfd-sim.

- pymodbus's own ``ModbusTcpServer`` over a device context (with its MBAP framer, and with its RTU
  framer as a serial server's line would answer: RTU over TCP), and a libmodbus server compiled here
  from C (``modbus_tcp_listen`` / ``modbus_receive`` / ``modbus_reply``), both holding one register
  image laid out by hand per two shipped profiles (ABB ACS580: 32-bit values low word first;
  SINAMICS G120: 16-bit, signed). The agent's client layer and its poller read them, and every
  decoded value must be the one put there.
- ``mbpoll`` (libmodbus's command-line master) reads and writes a simulated drive over TCP and
  over RTU on a pty pair, and must see what the simulator serves.

The register words are built here with ``struct``, not with the agent's codec, and the expected
values are written out from the raw numbers with the unit factors spelled out; they must agree to
12 significant digits (the agent multiplies scale and unit factor in another order).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import struct
import subprocess
import textwrap

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer

from agent.config import BusConfig, Transport, load_config
from agent.config.profile import BUILTIN_PROFILES, Quantity, RegisterTable, load_profile
from agent.config.yamlsource import Issues
from agent.modbus.client import BusClient
from agent.modbus.readplan import Block, decode_blocks, plan_for
from agent.service import Agent
from hil import SimulatedPlant, load_plant
from hil.faults import Fault
from tests.ptypair import pty_pair
from tests.support import REPO, async_wait_until

DEMO = REPO / "configs" / "plants" / "demo.yaml"
IMAGE_SIZE = 20300  # holding registers 0..20299: the highest address below is ABB's energy at 20240
RPM, PCT, KW, KWH = 2 * math.pi / 60, 0.01, 1e3, 3.6e6

Q = Quantity
# (address, type, word order) of each raw value below, as the manuals lay them out.
ABB = {  # unit 1, profile abb-acs580
    Q.CONTROL_WORD: (0, "H", "big", 0x047F, 1.0),
    Q.SPEED_SETPOINT: (1, "h", "big", -5000, 0.005 * PCT),  # REF1 -25 %
    Q.STATUS_WORD: (3, "H", "big", 0x0207, 1.0),
    Q.FAULT_CODE: (400, "H", "big", 0x2310, 1.0),
    Q.SPEED: (20201, "i", "little", 123456, 0.01 * RPM),
    Q.OUTPUT_FREQUENCY: (20211, "i", "little", 4200, 0.01),
    Q.CURRENT: (20213, "i", "little", 2345, 0.01),
    Q.DC_VOLTAGE: (20221, "i", "little", 56012, 0.01),
    Q.POWER: (20227, "i", "little", 1234, 0.01 * KW),
    Q.ENERGY: (20239, "I", "little", 2_500_000_000, KWH),  # above 2^31: unsigned
}
G120 = {  # unit 2, profile sinamics-g120
    Q.CONTROL_WORD: (99, "H", "big", 0x047E, 1.0),
    Q.SPEED_SETPOINT: (100, "h", "big", 0x2000, 0.006103515625 * PCT),  # 0x4000 = 100 %
    Q.STATUS_WORD: (109, "H", "big", 0x0207, 1.0),
    Q.SPEED: (340, "h", "big", 1452, RPM),
    Q.OUTPUT_FREQUENCY: (341, "h", "big", 4840, 0.01),
    Q.DC_VOLTAGE: (343, "h", "big", 562, 1.0),
    Q.CURRENT: (344, "h", "big", 1520, 0.01),
    Q.TORQUE: (345, "h", "big", -1234, 0.01),
    Q.POWER: (346, "h", "big", 1105, 0.01 * KW),
    Q.ENERGY: (347, "h", "big", 12345, KWH),
    Q.FAULT_CODE: (399, "H", "big", 0, 1.0),
}
DRIVES = {1: ("abb-acs580", ABB), 2: ("sinamics-g120", G120)}


def words(kind: str, raw: int, word_order: str) -> list[int]:
    packed = struct.pack(f">{kind}", raw)
    big = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
    return big[::-1] if word_order == "little" else big


def image() -> dict[int, int]:
    """Address -> register of both drives' maps (they do not overlap)."""
    registers: dict[int, int] = {}
    for _, points in DRIVES.values():
        for address, kind, order, raw, _ in points.values():
            for offset, word in enumerate(words(kind, raw, order)):
                assert address + offset not in registers
                registers[address + offset] = word
    return registers


def expected(points) -> dict[Quantity, float]:
    return {quantity: raw * factor for quantity, (_, _, _, raw, factor) in points.items()}


def tcp_bus(port: int, transport: Transport = Transport.TCP) -> BusConfig:
    return BusConfig(name="foreign", transport=transport, host="127.0.0.1", port=port, poll_interval=0.5,
                     timeout=1.0, retries=0, reconnect_delay_max=1.0)


async def read_every_point(port: int, transport: Transport = Transport.TCP
                           ) -> dict[int, dict[Quantity, float]]:
    """Every point of both drives through the agent's client layer, as the poller plans the reads."""
    bus = tcp_bus(port, transport)
    client = BusClient(bus)
    await client.connect()
    try:
        decoded = {}
        for unit, (profile_name, _) in DRIVES.items():
            profile = load_profile(BUILTIN_PROFILES / f"{profile_name}.yaml", Issues())
            blocks = plan_for(bus, profile)
            decoded[unit] = decode_blocks(blocks, [await client.read(unit, b) for b in blocks])
        return decoded
    finally:
        client.close()


async def write_and_read_back(port: int, transport: Transport = Transport.TCP) -> list[int]:
    """Set ABB's REF1 to +40 % (int16 8000) and the G120's control word to run, then read both back."""
    client = BusClient(tcp_bus(port, transport))
    await client.connect()
    try:
        await client.write(1, 1, [8000])
        await client.write(2, 99, [0x047F])
        await client.write(2, 99, [0x047F, 0x2000])  # function 16 too
        return [(await client.read(unit, Block(RegisterTable.HOLDING, address, 1, ())))[0]
                for unit, address in ((1, 1), (2, 99))]
    finally:
        client.close()


def site(tmp_path, port, transport=Transport.TCP):
    text = textwrap.dedent(f"""\
        site: {{name: interop, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 0.3, timeout_s: 0.2, retries: 0, max_gap_s: 3}}
        buses:
          - {{name: foreign, transport: {transport.value}, host: 127.0.0.1, port: {port},
             reconnect_delay_max_s: 1}}
        drives:
        """)
    for unit, (profile, _) in DRIVES.items():
        text += (f"  - {{name: {profile}, bus: foreign, unit: {unit}, profile: {profile},\n"
                 "     rated_power_kw: 15, rated_speed_rpm: 1470,\n"
                 "     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


async def poll_with_the_agent(tmp_path, port, transport=Transport.TCP) -> None:
    """The agent's pollers against the server: both drives up, every value as put there."""
    agent = Agent(site(tmp_path, port, transport))
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop, serve_metrics=False))
    try:
        await async_wait_until(lambda: all(d.up for d in agent.drives), 15, "both drives up")
        for drive in agent.drives:
            points = DRIVES[drive.config.unit][1]
            assert drive.last is not None
            assert drive.last.values == pytest.approx(expected(points), rel=1e-12), drive.name
        power = agent.registry.get_sample_value("vfd_power_watts", {"drive": "abb-acs580"})
        assert power == pytest.approx(12340.0, rel=1e-12)
    finally:
        stop.set()
        await run


def check_decoded(decoded) -> None:
    for unit, (_, points) in DRIVES.items():
        assert decoded[unit].keys() == points.keys()
        for quantity, value in expected(points).items():
            assert decoded[unit][quantity] == pytest.approx(value, rel=1e-12), (unit, quantity)


# --- pymodbus's own server ------------------------------------------------------------------------

@pytest.mark.parametrize("transport", [Transport.TCP, Transport.RTU_OVER_TCP])
def test_the_agent_reads_and_writes_a_pymodbus_server(tmp_path, transport):
    registers = image()

    async def scenario():
        values = [registers.get(address, 0) for address in range(IMAGE_SIZE)]
        # pymodbus 3.16 stores a block at its address - 1: a block at 1 holds address 0 on.
        device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, values))
        context = ModbusServerContext(devices=device, single=True)
        framer = FramerType.SOCKET if transport is Transport.TCP else FramerType.RTU
        server = ModbusTcpServer(context, framer=framer, address=("127.0.0.1", 0))
        serving = asyncio.create_task(server.serve_forever())
        try:
            await async_wait_until(lambda: server.transport is not None, 10, "the server listening")
            port = server.transport.sockets[0].getsockname()[1]
            check_decoded(await read_every_point(port, transport))
            await poll_with_the_agent(tmp_path, port, transport)
            assert await write_and_read_back(port, transport) == [8000, 0x047F]
        finally:
            await server.shutdown()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    asyncio.run(scenario())


# --- a libmodbus server ---------------------------------------------------------------------------

LIBMODBUS_SERVER = r"""
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

/* usage: server REGISTERS_FILE COUNT; prints its port, then serves until killed. */
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    modbus_mapping_t *map = modbus_mapping_new(0, 0, atoi(argv[2]), 0);
    FILE *file = fopen(argv[1], "r");
    unsigned address, value;
    if (map == NULL || file == NULL) return 1;
    while (fscanf(file, "%u %u", &address, &value) == 2) map->tab_registers[address] = (uint16_t)value;
    fclose(file);
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", 0);
    int server = modbus_tcp_listen(ctx, 1);
    struct sockaddr_in bound;
    socklen_t size = sizeof bound;
    if (server < 0 || getsockname(server, (struct sockaddr *)&bound, &size) < 0) return 1;
    printf("%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        if (modbus_tcp_accept(ctx, &server) < 0) return 1;
        for (;;) {
            int rc = modbus_receive(ctx, query);
            if (rc > 0) modbus_reply(ctx, query, rc, map);
            else if (rc == -1) break;
        }
        close(modbus_get_socket(ctx));
    }
}
"""


def libmodbus_server(tmp_path):
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        pytest.skip("gcc or pkg-config is not installed")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True)
    if flags.returncode != 0:
        pytest.skip("libmodbus-dev is not installed")
    source, binary = tmp_path / "server.c", tmp_path / "server"
    source.write_text(LIBMODBUS_SERVER)
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(binary), str(source), *flags.stdout.split()],
                   check=True, capture_output=True, text=True)
    registers = tmp_path / "registers.txt"
    registers.write_text("".join(f"{a} {v}\n" for a, v in image().items()))
    return subprocess.Popen([str(binary), str(registers), str(IMAGE_SIZE)], stdout=subprocess.PIPE, text=True)


def test_the_agent_reads_and_writes_a_libmodbus_server(tmp_path):
    server = libmodbus_server(tmp_path)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())

        async def scenario():
            check_decoded(await read_every_point(port))
            await poll_with_the_agent(tmp_path, port)
            assert await write_and_read_back(port) == [8000, 0x047F]

        asyncio.run(scenario())
        assert server.poll() is None  # libmodbus served every connection the agent opened and closed
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


# --- mbpoll against vfd-sim -----------------------------------------------------------------------

def mbpoll_available() -> None:
    if shutil.which("mbpoll") is None:
        pytest.skip("mbpoll is not installed")


async def mbpoll(*args: str) -> str:
    process = await asyncio.create_subprocess_exec("mbpoll", "-1", "-0", "-o", "2", *args,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


def mbpoll_values(text: str) -> dict[int, int]:
    """mbpoll's "[address]: value" lines."""
    values = {}
    for line in text.splitlines():
        if line.startswith("["):
            address, value = line.split(":", 1)
            values[int(address.strip("[]"))] = int(value.split()[0])
    return values


def served(sim: SimulatedPlant, unit: int, function: int, address: int, count: int) -> dict[int, int]:
    """The registers the simulator serves, asked in-process."""
    reply = sim.answer(unit, struct.pack(">BHH", function, address, count), rtu=False).pdu
    assert reply is not None and reply[0] == function, reply
    return dict(zip(range(address, address + count), struct.unpack(f">{count}H", reply[2:]), strict=True))


async def mbpoll_reads_and_writes(sim: SimulatedPlant, where: list[str]) -> None:
    # Frozen registers (fault "stuck") so mbpoll and the simulator can be compared word for word.
    for name in sim.drive_names:
        sim.inject(name, Fault.STUCK)
    for unit in sim.units.values():
        read = mbpoll_values(await mbpoll("-a", str(unit), "-r", "0", "-c", "10", "-t", "4", *where))
        assert read == served(sim, unit, 3, 0, 10), unit
        assert read[1] > 0  # speed in 0.1 rpm: the drive runs
    # Write the speed setpoint (generic profile: address 101, 0.01 %) and read it back.
    await mbpoll("-a", "2", "-r", "101", "-t", "4", *where, "6543")
    assert mbpoll_values(await mbpoll("-a", "2", "-r", "101", "-t", "4", *where)) == {101: 6543}
    assert sim.model.drives["cw-pump-1"].remote_setpoint == pytest.approx(0.6543)
    assert served(sim, 2, 3, 101, 1) == {101: 6543}


def test_mbpoll_reads_and_writes_vfd_sim_over_tcp():
    mbpoll_available()

    async def scenario():
        sim = SimulatedPlant(load_plant(DEMO), seed=4)
        await sim.start("127.0.0.1", 0)
        try:
            await mbpoll_reads_and_writes(sim, ["-m", "tcp", "-p", str(sim.port), "127.0.0.1"])
        finally:
            await sim.stop()

    asyncio.run(scenario())


def test_mbpoll_reads_and_writes_vfd_sim_over_rtu(tmp_path):
    mbpoll_available()

    async def scenario(a, b):
        sim = SimulatedPlant(load_plant(DEMO), seed=4)
        await sim.start_rtu(a, baudrate=19200, parity="N", stopbits=2)
        try:
            await mbpoll_reads_and_writes(sim, ["-m", "rtu", "-b", "19200", "-P", "none", "-s", "2", b])
        finally:
            await sim.stop()

    with pty_pair(tmp_path) as (a, b):
        asyncio.run(scenario(a, b))
