"""The IIO context an emulated ADALM-PLUTO presents: devices, channels, attributes with defaults, and its XML.

Written for otalab after the layout of a real Pluto (firmware 0.3x, libiio 0.24): the AD9363 control device
``ad9361-phy`` (``iio:device0``), the TX DMA/DDS core ``cf-ad9361-dds-core-lpc`` (``iio:device2``) and the RX DMA core
``cf-ad9361-lpc`` (``iio:device3``). Only what clients actually use is modelled (pyadi-iio's ``adi.Pluto``, iio_info,
GNU Radio's iio blocks); attribute values are strings exactly as sysfs would hand them out.

Channel attributes that the Linux driver exposes through one sysfs file (e.g. ``in_voltage_sampling_frequency`` for
``voltage0`` and ``voltage1``) share one value: an attribute is stored under ``(device id, filename)``.

Scan formats: RX ``le:S12/16>>0`` (12-bit samples already sign-extended to 16 bits by the HDL, so libiio passes the
int16 words through unchanged), TX ``le:S16/16>>0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

#: libiio's context DTD (the client validates the XML against it)
IIO_DTD = (
    '<!DOCTYPE context [<!ELEMENT context (device | context-attribute)*><!ELEMENT context-attribute EMPTY>'
    '<!ELEMENT device (channel | attribute | debug-attribute | buffer-attribute)*>'
    '<!ELEMENT channel (scan-element?, attribute*)><!ELEMENT attribute EMPTY><!ELEMENT scan-element EMPTY>'
    '<!ELEMENT debug-attribute EMPTY><!ELEMENT buffer-attribute EMPTY>'
    '<!ATTLIST context name CDATA #REQUIRED version-major CDATA #REQUIRED version-minor CDATA #REQUIRED '
    'version-git CDATA #REQUIRED description CDATA #IMPLIED>'
    '<!ATTLIST context-attribute name CDATA #REQUIRED value CDATA #REQUIRED>'
    '<!ATTLIST device id CDATA #REQUIRED name CDATA #IMPLIED label CDATA #IMPLIED>'
    '<!ATTLIST channel id CDATA #REQUIRED type (input|output) #REQUIRED name CDATA #IMPLIED>'
    '<!ATTLIST scan-element index CDATA #REQUIRED format CDATA #REQUIRED scale CDATA #IMPLIED>'
    '<!ATTLIST attribute name CDATA #REQUIRED filename CDATA #IMPLIED>'
    '<!ATTLIST debug-attribute name CDATA #REQUIRED><!ATTLIST buffer-attribute name CDATA #REQUIRED>]>'
)

PHY, TXDAC, RXADC = "iio:device0", "iio:device2", "iio:device3"
RX_FORMAT, TX_FORMAT = "le:S12/16>>0", "le:S16/16>>0"
#: TX int16 word that otalab (and pyadi-iio's examples) use for amplitude 1.0: 6 dB below the DAC's 2**15
TX_FULL_SCALE = 2 ** 14
#: RX full scale: the AD9363 ADC has 12 bits, so received words lie in [-2048, 2047]
RX_FULL_SCALE = 2 ** 11
GAIN_MODES = ("manual", "fast_attack", "slow_attack", "hybrid")
DEFAULT_RATE = 30_720_000


@dataclass
class Channel:
    """One IIO channel: ``attrs`` maps attribute name -> sysfs filename (the storage key)."""

    id: str
    output: bool
    name: str | None = None
    scan_index: int | None = None
    scan_format: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Device:
    """One IIO device with its channels and device/debug/buffer attribute names."""

    id: str
    name: str
    channels: list[Channel] = field(default_factory=list)
    attrs: list[str] = field(default_factory=list)
    debug_attrs: list[str] = field(default_factory=list)
    buffer_attrs: list[str] = field(default_factory=list)

    def channel(self, chan_id: str, output: bool) -> Channel | None:
        """The channel with this id and direction, or None."""
        for ch in self.channels:
            if ch.id == chan_id and ch.output == output:
                return ch
        return None

    @property
    def scan_channels(self) -> list[Channel]:
        """Buffer-capable channels in libiio's mask order (sorted by scan index)."""
        return sorted((c for c in self.channels if c.scan_index is not None), key=lambda c: c.scan_index)


def _chan(cid: str, output: bool, attrs: list[str], name: str | None = None, shared: tuple[str, ...] = (),
          scan: tuple[int, str] | None = None) -> Channel:
    """Build a channel; attributes in ``shared`` live in one sysfs file for all channels of that type."""
    prefix = "out" if output else "in"
    ctype = cid.rstrip("0123456789")
    files = {}
    for a in attrs:
        if a in shared:
            files[a] = f"{prefix}_{ctype}_{a}"
        elif name:
            files[a] = f"{prefix}_{cid}_{name}_{a}"
        else:
            files[a] = f"{prefix}_{cid}_{a}"
    idx, fmt = scan if scan else (None, None)
    return Channel(cid, output, name, idx, fmt, files)


def pluto_devices() -> list[Device]:
    """The devices of the emulated Pluto (a fresh object graph per call)."""
    rx_shared = ("rf_bandwidth", "rf_bandwidth_available", "sampling_frequency", "sampling_frequency_available",
                 "gain_control_mode_available", "rf_port_select_available", "filter_fir_en",
                 "quadrature_tracking_en", "rf_dc_offset_tracking_en", "bb_dc_offset_tracking_en")
    tx_shared = ("rf_bandwidth", "rf_bandwidth_available", "sampling_frequency", "sampling_frequency_available",
                 "rf_port_select_available", "filter_fir_en")
    lo_attrs = ["frequency", "frequency_available", "powerdown", "external", "fastlock_store", "fastlock_recall",
                "fastlock_save", "fastlock_load"]
    phy = Device(PHY, "ad9361-phy", channels=[
        _chan("voltage0", False, ["hardwaregain", "hardwaregain_available", "gain_control_mode",
                                  "gain_control_mode_available", "rf_bandwidth", "rf_bandwidth_available",
                                  "sampling_frequency", "sampling_frequency_available", "rf_port_select",
                                  "rf_port_select_available", "rssi", "filter_fir_en", "quadrature_tracking_en",
                                  "rf_dc_offset_tracking_en", "bb_dc_offset_tracking_en"], shared=rx_shared),
        _chan("voltage0", True, ["hardwaregain", "hardwaregain_available", "rf_bandwidth", "rf_bandwidth_available",
                                 "sampling_frequency", "sampling_frequency_available", "rf_port_select",
                                 "rf_port_select_available", "rssi", "filter_fir_en"], shared=tx_shared),
        _chan("altvoltage0", True, lo_attrs, name="RX_LO"),
        _chan("altvoltage1", True, lo_attrs, name="TX_LO"),
        _chan("temp0", False, ["input"]),
        Channel("out", False, None, None, None, {"voltage_filter_fir_en": "in_out_voltage_filter_fir_en"}),
    ], attrs=["calib_mode", "calib_mode_available", "dcxo_tune_coarse", "dcxo_tune_fine", "ensm_mode",
              "ensm_mode_available", "filter_fir_config", "multichip_sync", "rssi_gain_step_error", "rx_path_rates",
              "trx_rate_governor", "trx_rate_governor_available", "tx_path_rates", "xo_correction",
              "xo_correction_available"],
        debug_attrs=["loopback", "initialize", "bist_prbs", "bist_tone", "bist_timing_analysis",
                     "digital_tune", "calibration_switch_control", "direct_reg_access"])
    dds_channels = [
        _chan("voltage0", True, ["calibphase", "calibscale", "sampling_frequency", "sampling_frequency_available"],
              shared=("sampling_frequency", "sampling_frequency_available"), scan=(0, TX_FORMAT)),
        _chan("voltage1", True, ["calibphase", "calibscale", "sampling_frequency", "sampling_frequency_available"],
              shared=("sampling_frequency", "sampling_frequency_available"), scan=(1, TX_FORMAT)),
    ]
    for i, tone in enumerate(("TX1_I_F1", "TX1_I_F2", "TX1_Q_F1", "TX1_Q_F2")):
        dds_channels.append(_chan(f"altvoltage{i}", True, ["frequency", "phase", "raw", "scale",
                                                           "sampling_frequency"], name=tone))
    txdac = Device(TXDAC, "cf-ad9361-dds-core-lpc", channels=dds_channels,
                   debug_attrs=["direct_reg_access"], buffer_attrs=["data_available", "length_align_bytes"])
    adc_channels = [
        _chan(f"voltage{i}", False, ["calibbias", "calibphase", "calibscale", "samples_pps", "sampling_frequency",
                                     "sampling_frequency_available"],
              shared=("sampling_frequency", "sampling_frequency_available"), scan=(i, RX_FORMAT))
        for i in range(2)]
    rxadc = Device(RXADC, "cf-ad9361-lpc", channels=adc_channels,
                   debug_attrs=["direct_reg_access"], buffer_attrs=["data_available", "length_align_bytes"])
    return [phy, txdac, rxadc]


def path_rates(rate: int, fir_dec: int = 1) -> tuple[str, str]:
    """``rx_path_rates`` and ``tx_path_rates`` strings for baseband rate ``rate`` with an enabled FIR that decimates
    (interpolates) by ``fir_dec`` (format of the AD9361 driver: RF = rate · fir_dec, then three 2x half-band stages
    to the converter, BBPLL = 4 · converter rate; the real driver picks 2x/3x stages, clients only parse the
    ratios)."""
    r = int(rate)
    f = r * int(fir_dec)
    return (f"BBPLL:{f * 32} ADC:{f * 8} R2:{f * 4} R1:{f * 2} RF:{f} RXSAMP:{r}",
            f"BBPLL:{f * 32} DAC:{f * 8} T2:{f * 4} T1:{f * 2} TF:{f} TXSAMP:{r}")


def default_values() -> dict[tuple[str, str], str]:
    """Power-on attribute values keyed ``(device id, storage key)``; storage keys are channel-attribute filenames,
    ``attr:<name>``, ``debug:<name>`` or ``buffer:<name>``."""
    rx_rates, tx_rates = path_rates(DEFAULT_RATE)
    rate_avail = "[2083333 1 61440000]"
    v = {
        (PHY, "in_voltage0_hardwaregain"): "71.000000 dB",
        (PHY, "in_voltage0_hardwaregain_available"): "[-1 1 73]",
        (PHY, "in_voltage0_gain_control_mode"): "slow_attack",
        (PHY, "in_voltage_gain_control_mode_available"): " ".join(GAIN_MODES),
        (PHY, "in_voltage_rf_bandwidth"): "18000000",
        (PHY, "in_voltage_rf_bandwidth_available"): "[200000 1 56000000]",
        (PHY, "in_voltage_sampling_frequency"): str(DEFAULT_RATE),
        (PHY, "in_voltage_sampling_frequency_available"): rate_avail,
        (PHY, "in_voltage0_rf_port_select"): "A_BALANCED",
        (PHY, "in_voltage_rf_port_select_available"): "A_BALANCED B_BALANCED C_BALANCED A_N A_P B_N B_P C_N C_P "
                                                       "TX_MONITOR1 TX_MONITOR2 TX_MONITOR1_2",
        (PHY, "in_voltage0_rssi"): "100.00 dB",
        (PHY, "in_voltage_filter_fir_en"): "0",
        (PHY, "in_voltage_quadrature_tracking_en"): "1",
        (PHY, "in_voltage_rf_dc_offset_tracking_en"): "1",
        (PHY, "in_voltage_bb_dc_offset_tracking_en"): "1",
        (PHY, "out_voltage0_hardwaregain"): "-10.000000 dB",
        (PHY, "out_voltage0_hardwaregain_available"): "[0 250 89750]",
        (PHY, "out_voltage_rf_bandwidth"): "18000000",
        (PHY, "out_voltage_rf_bandwidth_available"): "[200000 1 40000000]",
        (PHY, "out_voltage_sampling_frequency"): str(DEFAULT_RATE),
        (PHY, "out_voltage_sampling_frequency_available"): rate_avail,
        (PHY, "out_voltage0_rf_port_select"): "A",
        (PHY, "out_voltage_rf_port_select_available"): "A B",
        (PHY, "out_voltage0_rssi"): "0.00 dB",
        (PHY, "out_voltage_filter_fir_en"): "0",
        (PHY, "in_out_voltage_filter_fir_en"): "0",
        (PHY, "in_temp0_input"): "35000",
        (PHY, "attr:calib_mode"): "auto",
        (PHY, "attr:calib_mode_available"): "auto manual manual_tx_quad tx_quad rf_dc_offs rssi_gain_step",
        (PHY, "attr:dcxo_tune_coarse"): "0",
        (PHY, "attr:dcxo_tune_fine"): "0",
        (PHY, "attr:ensm_mode"): "fdd",
        (PHY, "attr:ensm_mode_available"): "sleep wait alert fdd pinctrl pinctrl_fdd_indep",
        (PHY, "attr:filter_fir_config"): "FIR Rx: 0,0 Tx: 0,0",
        (PHY, "attr:multichip_sync"): "0",
        (PHY, "attr:rssi_gain_step_error"): "lna_error: 0 0 0 0\nmixer_error: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
                                            "gain_step_calib_reg_val: 0 0 0 0 0",
        (PHY, "attr:rx_path_rates"): rx_rates,
        (PHY, "attr:tx_path_rates"): tx_rates,
        (PHY, "attr:trx_rate_governor"): "nominal",
        (PHY, "attr:trx_rate_governor_available"): "nominal highest_osr",
        (PHY, "attr:xo_correction"): "40000000",
        (PHY, "attr:xo_correction_available"): "[39992000 1 40008000]",
        (PHY, "debug:loopback"): "0",
        (PHY, "debug:initialize"): "0",
        (PHY, "debug:bist_prbs"): "0",
        (PHY, "debug:bist_tone"): "0",
        (PHY, "debug:bist_timing_analysis"): "0",
        (PHY, "debug:digital_tune"): "0",
        (PHY, "debug:calibration_switch_control"): "0",
        (PHY, "debug:direct_reg_access"): "0x0",
        (TXDAC, "debug:direct_reg_access"): "0x0",
        (RXADC, "debug:direct_reg_access"): "0x0",
    }
    for lo, freq in (("RX_LO", 2_400_000_000), ("TX_LO", 2_450_000_000)):
        idx = 0 if lo == "RX_LO" else 1
        base = f"out_altvoltage{idx}_{lo}_"
        v.update({(PHY, base + "frequency"): str(freq), (PHY, base + "frequency_available"): "[70000000 1 6000000000]",
                  (PHY, base + "powerdown"): "0", (PHY, base + "external"): "0",
                  (PHY, base + "fastlock_store"): "0", (PHY, base + "fastlock_recall"): "0",
                  (PHY, base + "fastlock_save"): "0 " + ",".join(["0"] * 16), (PHY, base + "fastlock_load"): "0"})
    for dev in (TXDAC, RXADC):
        prefix = "out" if dev == TXDAC else "in"
        v[(dev, f"{prefix}_voltage_sampling_frequency")] = str(DEFAULT_RATE)
        v[(dev, f"{prefix}_voltage_sampling_frequency_available")] = f"{DEFAULT_RATE} {DEFAULT_RATE // 8}"
        v[(dev, "buffer:data_available")] = "0"
        v[(dev, "buffer:length_align_bytes")] = "8"
        for i in range(2):
            for a, val in (("calibphase", "0.000000"), ("calibscale", "1.000000"), ("calibbias", "0"),
                           ("samples_pps", "0")):
                v[(dev, f"{prefix}_voltage{i}_{a}")] = val
    for i, tone in enumerate(("TX1_I_F1", "TX1_I_F2", "TX1_Q_F1", "TX1_Q_F2")):
        base = f"out_altvoltage{i}_{tone}_"
        v.update({(TXDAC, base + "frequency"): "9279985", (TXDAC, base + "phase"): "90000" if "I" in tone else "0",
                  (TXDAC, base + "raw"): "1", (TXDAC, base + "scale"): "0.250000",
                  (TXDAC, base + "sampling_frequency"): str(DEFAULT_RATE)})
    return v


def context_xml(devices: list[Device], description: str = "otalab emulated ADALM-PLUTO",
                wallclock: bool = False) -> str:
    """The context XML (with libiio's inline DTD) that ``PRINT`` returns; the context attribute
    ``otalab,emulator_wallclock`` tells clients whether the emulator runs on a wall clock (PlutoRadio streams
    only then)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>', IIO_DTD,
           f'<context name="network" version-major="0" version-minor="24" version-git="otalab" '
           f'description={quoteattr(description)} >',
           '<context-attribute name="hw_model" value="Analog Devices PlutoSDR Rev.C (Z7010-AD9363A) (emulated)" />',
           '<context-attribute name="hw_model_variant" value="0" />',
           '<context-attribute name="hw_serial" value="otalab-emulator" />',
           '<context-attribute name="fw_version" value="v0.38-otalab" />',
           '<context-attribute name="ad9361-phy,model" value="ad9363a" />',
           '<context-attribute name="local,kernel" value="otalab" />',
           '<context-attribute name="ip,ip-addr" value="127.0.0.1" />',
           f'<context-attribute name="otalab,emulator_wallclock" value="{int(wallclock)}" />']
    for dev in devices:
        out.append(f'<device id="{dev.id}" name="{dev.name}" >')
        for ch in dev.channels:
            name = f' name="{ch.name}"' if ch.name else ""
            out.append(f'<channel id="{ch.id}"{name} type="{"output" if ch.output else "input"}" >')
            if ch.scan_index is not None:
                out.append(f'<scan-element index="{ch.scan_index}" format="{ch.scan_format}" />')
            out.extend(f'<attribute name="{a}" filename="{f}" />' for a, f in ch.attrs.items())
            out.append('</channel>')
        out.extend(f'<attribute name="{a}" />' for a in dev.attrs)
        out.extend(f'<debug-attribute name="{a}" />' for a in dev.debug_attrs)
        out.extend(f'<buffer-attribute name="{a}" />' for a in dev.buffer_attrs)
        out.append('</device>')
    out.append('</context>')
    return "".join(out)
