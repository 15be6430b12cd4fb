namespace SnnSpec.HwSim

/// Picojoule, the energy unit of SpikeSim's ELA constants (methods.md §6.3).
[<Measure>]
type pJ

/// Square micrometre, the area unit of SpikeSim's ELA constants (methods.md §6.4).
[<Measure>]
type um2

/// Nanosecond, the latency unit of the ELA (methods.md §6.5).
[<Measure>]
type ns

/// Megahertz, the clock unit.
[<Measure>]
type MHz

/// One stored bit (memory sizing).
[<Measure>]
type bit

/// Conversions from the model's working units to SI-derived reporting units.
module Units =
    /// 1 pJ = 1e−12 J.
    let joules (e: float<pJ>) = float e * 1e-12

    /// 1 ns = 1e−9 s.
    let seconds (d: float<ns>) = float d * 1e-9

    /// 1 µm² = 1e−6 mm².
    let squareMillimetres (a: float<um2>) = float a * 1e-6

    /// The period of one clock cycle: 1000 / f[MHz] ns.
    let clockPeriod (f: float<MHz>) : float<ns> = 1000.0<ns MHz> / f
