namespace SnnSpec.HwSim

open SnnSpec

/// Which feature-map side a layer's PE cycles, latency and membrane memory are counted on.
[<RequireQualifiedAccess>]
type SpatialRule =
    /// The output map after any pooling that follows the layer, as the ELA takes it (H_o, §6.2).
    | PooledOutput
    /// The convolution's own output map, before pooling (every position is computed).
    | ConvOutput

/// A SpikeFlow-style monolithic crossbar IMC chip (methods.md §6.2): tiles of PEs on an H-tree,
/// each PE holding CrossbarsPerPe crossbars of CrossbarSize² cells with shared, muxed ADCs.
type Accelerator =
    {
        /// Crossbar side X (rows = columns): 64.
        CrossbarSize: int
        /// Crossbars per PE: k² = 9 for the ELA's kernel-wise mapping of 3×3 kernels (one crossbar per tap).
        CrossbarsPerPe: int
        /// PEs per tile ppt: 8.
        PesPerTile: int
        /// Columns sharing one ADC through a column mux: 8 (8:1 mux, the script's xbar_size/8 ADCs).
        ColumnMux: int
        /// ADC resolution in bits [R: 4, NICE's default].
        AdcBits: int
        /// Clock f: 250 MHz.
        Clock: float<MHz>
        /// Clock cycles per PE cycle: 26 (104 ns at 250 MHz).
        ClocksPerPeCycle: int
        /// Fraction of a layer's outputs after which the next layer starts: 0.75 (§6.5).
        PipelineOverlap: float
        /// Tile-buffer size: 64 × 128 bits.
        TileBufferBits: int
        /// Only the first n mapped layers count toward membrane memory: Some 5 in the ELA (hard-coded,
        /// §6.4, §7.7); None counts every layer.
        MembraneMemoryLayers: int option
        /// The feature-map side cycles are counted on (the ELA: PooledOutput).
        Spatial: SpatialRule
        /// Weight, cell and membrane bit widths (§6.9).
        Precision: Precision
        /// Technology constants for the device.
        Technology: Technology
    }

module Accelerator =
    /// SpikeSim's ELA default: 65 nm RRAM, X = 64, k = 3, 8 PEs per tile, 8:1 mux, 250 MHz
    /// (methods.md §6.2–6.5, §6.7).
    let spikeSim =
        {
            CrossbarSize = 64
            CrossbarsPerPe = 9
            PesPerTile = 8
            ColumnMux = 8
            AdcBits = 4
            Clock = 250.0<MHz>
            ClocksPerPeCycle = 26
            PipelineOverlap = 0.75
            TileBufferBits = 64 * 128
            MembraneMemoryLayers = Some 5
            Spatial = SpatialRule.PooledOutput
            Precision = Precision.spikeSim
            Technology = Technology.rram65nm
        }

    /// The ELA's SRAM option (crossbar read energy and area 671.089).
    let spikeSimSram =
        { spikeSim with
            Technology = Technology.sram65nm
        }

    /// Same chip with the technology constants of another device.
    let withDevice (d: Device) (a: Accelerator) =
        { a with
            Technology = Technology.ofDevice d
        }

    /// Raises SnnSpecException naming the first parameter outside its range.
    let validate (a: Accelerator) =
        let op = "Accelerator"

        let positive name v =
            if v <= 0 then
                Errors.invalidArg op name v "a positive integer"

        positive "CrossbarSize" a.CrossbarSize
        positive "CrossbarsPerPe" a.CrossbarsPerPe
        positive "PesPerTile" a.PesPerTile
        positive "ColumnMux" a.ColumnMux
        positive "AdcBits" a.AdcBits
        positive "ClocksPerPeCycle" a.ClocksPerPeCycle
        positive "TileBufferBits" a.TileBufferBits
        positive "Technology.ReferenceCrossbarSize" a.Technology.ReferenceCrossbarSize
        positive "Technology.ReferenceAdcBits" a.Technology.ReferenceAdcBits
        positive "Technology.ReferenceMembraneBits" a.Technology.ReferenceMembraneBits
        positive "Technology.InputMemoryBitsPerValue" a.Technology.InputMemoryBitsPerValue

        if not (a.Clock > 0.0<MHz>) then
            Errors.invalidArg op "Clock" a.Clock "a positive frequency in MHz"

        if not (a.PipelineOverlap >= 0.0 && a.PipelineOverlap <= 1.0) then
            Errors.invalidArg op "PipelineOverlap" a.PipelineOverlap "a fraction in [0, 1]"

        match a.MembraneMemoryLayers with
        | Some n when n < 0 -> Errors.invalidArg op "MembraneMemoryLayers" n "None or a non-negative count"
        | _ -> ()

        Precision.validate a.Precision

    /// ADCs per PE n_adc = ⌈X / mux⌉ (the script's xbar_size/8). The ELA also repeats the PE read
    /// unit n_adc times per PE cycle (E_cycle's (X/8)·E_PEunit, §6.3); HwSim reproduces that as written.
    let adcsPerPe (a: Accelerator) =
        (a.CrossbarSize + a.ColumnMux - 1) / a.ColumnMux

    /// Cell-count scaling of crossbar read energy and area, (X / X_ref)² [R; 1 at the ELA's X = 64].
    let crossbarFactor (a: Accelerator) =
        let r = float a.CrossbarSize / float a.Technology.ReferenceCrossbarSize
        r * r

    /// PE cycle time t_PE = ClocksPerPeCycle / f (104 ns at 26 clocks, 250 MHz).
    let peCycleTime (a: Accelerator) : float<ns> =
        float a.ClocksPerPeCycle * Units.clockPeriod a.Clock
