import numpy as np

# A realistic end-suction pump at rated speed: 50 m shut-off, about 40 m at 0.05 m^3/s,
# best efficiency ~85 % near 0.05 m^3/s, ~25 kW shaft power.
PUMP_H = np.array([50.0, 40.0, -4800.0])
PUMP_P = np.array([8000.0, 4.0e5, -2.0e6, 5.0e6])


def scaled_pump(flow_scale, head_scale):
    """Geometrically different pump: H(Q) = sh H1(Q/sq), P(Q) = sh sq P1(Q/sq)."""
    hc = np.array([head_scale * PUMP_H[j] / flow_scale**j for j in range(3)])
    pc = np.array([head_scale * flow_scale * PUMP_P[j] / flow_scale**j for j in range(4)])
    return hc, pc


def pump_samples(rng, n, noise, r_lo=0.6, r_hi=1.0, hc=PUMP_H, pc=PUMP_P):
    r = rng.uniform(r_lo, r_hi, n)
    q = rng.uniform(0.01, 0.075, n)
    flow = q * r
    head = (hc[0] * r * r + hc[1] * r * flow + hc[2] * flow**2) * (1 + noise * rng.standard_normal(n))
    power = (
        pc[0] * r**3 + pc[1] * r * r * flow + pc[2] * r * flow**2 + pc[3] * flow**3
    ) * (1 + noise * rng.standard_normal(n))
    return flow, head, power, r
