namespace SnnSpec.HwSim

/// The memory device the crossbar cells are built from.
[<RequireQualifiedAccess>]
type Device =
    /// Resistive RAM, one multi-level cell per crosspoint (SpikeSim's default).
    | Rram
    /// 6T/8T SRAM crossbar.
    | Sram

/// How the ADC's energy and area depend on its resolution b relative to the reference resolution.
[<RequireQualifiedAccess>]
type AdcScaling =
    /// Independent of b (the public ELA: no ADC-bit term, methods.md §6.3).
    | Fixed
    /// ∝ b/b_ref, a successive-approximation converter with one comparison per bit [R].
    | Linear
    /// ∝ (2^b − 1)/(2^b_ref − 1), a flash converter with one comparator per level [R].
    | Exponential

/// Per-component technology constants of a 65 nm CMOS crossbar IMC chip. Every constant is
/// SpikeSim's ELA script value (`ela_spikesim.py` @ c2627bc, methods.md §6.3–6.4) unless marked [R]
/// (our documented, overridable assumption, methods.md §6.9).
type Technology =
    {
        Device: Device
        /// Crossbar side the crossbar constants refer to (64, the script's xbar_size).
        ReferenceCrossbarSize: int
        /// One read of a ReferenceCrossbarSize² crossbar including its row drivers: RRAM 1.76423 pJ;
        /// the SRAM option's 671.089 pJ equals its area value and is probably a placeholder (§7.7).
        CrossbarReadEnergy: float<pJ>
        /// One ADC conversion at ReferenceAdcBits: 2.03084 pJ.
        AdcEnergy: float<pJ>
        /// One column-mux selection: 0.094245 pJ.
        MuxEnergy: float<pJ>
        /// One subtractor operation: 1.15e−6 pJ.
        SubtractorEnergy: float<pJ>
        /// Subtractor operations per ADC group per PE cycle: 16 (the script's ×16).
        SubtractorOpsPerAdcGroup: int
        /// Temporary-buffer access per ADC group per PE cycle: 0.2 pJ.
        TempBufferEnergy: float<pJ>
        /// Tile-buffer access per PE cycle: 397 pJ.
        TileBufferEnergy: float<pJ>
        /// H-tree transfer per PE cycle: 157.12 pJ (= 19.64 × 8).
        HTreeEnergy: float<pJ>
        /// Global-memory fetch per PE cycle: 4.64 pJ.
        MemoryFetchEnergy: float<pJ>
        /// LIF/IF neuron-module update per PE cycle at ReferenceMembraneBits: 5.096 pJ (= 1.274 × 4).
        NeuronEnergy: float<pJ>
        /// Shift-and-add of one weight slice's ADC output per ADC group per PE cycle [R: taken
        /// equal to the subtractor's per-group energy, 16 × 1.15e−6 pJ; the ELA has no slicing].
        ShiftAddEnergy: float<pJ>
        /// ReferenceCrossbarSize² crossbar: RRAM 26.2144 µm², SRAM 671.089 µm².
        CrossbarArea: float<um2>
        /// One ADC at ReferenceAdcBits: 693.633 µm².
        AdcArea: float<um2>
        /// One column mux: 45.9 µm².
        MuxArea: float<um2>
        /// One subtractor unit: 13411.41498 µm².
        SubtractorArea: float<um2>
        /// A tile's temporary buffer: 484.644 µm².
        TempBufferArea: float<um2>
        /// One SRAM bit including periphery: 0.7391 µm² (tile buffer and global memories).
        SramBitArea: float<um2 / bit>
        /// H-tree share per tile: 433,660 µm² (= 216,830 × 2).
        HTreeAreaPerTile: float<um2>
        /// Resolution the ADC constants refer to [R: 4 bits, NICE's default ADC precision].
        ReferenceAdcBits: int
        /// How ADC energy and area scale with resolution.
        AdcScaling: AdcScaling
        /// Membrane bits the neuron energy and the ELA's memory factor 22 refer to [R: the factor
        /// 22 read as bits per stored membrane value, methods.md §6.9].
        ReferenceMembraneBits: int
        /// Bits per stored value in the input/spike memory: 22 (the script's unexplained factor, §7.7).
        InputMemoryBitsPerValue: int
    }

module Technology =
    /// SpikeSim's 65 nm RRAM constants (methods.md §6.3, §6.4) with a linear (SAR) ADC scaling
    /// around 4 bits and 22 reference membrane bits, so the public figures are recovered exactly.
    let rram65nm =
        {
            Device = Device.Rram
            ReferenceCrossbarSize = 64
            CrossbarReadEnergy = 1.76423<pJ>
            AdcEnergy = 2.03084<pJ>
            MuxEnergy = 0.094245<pJ>
            SubtractorEnergy = 1.15e-6<pJ>
            SubtractorOpsPerAdcGroup = 16
            TempBufferEnergy = 0.2<pJ>
            TileBufferEnergy = 397.0<pJ>
            HTreeEnergy = 19.64<pJ> * 8.0
            MemoryFetchEnergy = 4.64<pJ>
            NeuronEnergy = 1.274<pJ> * 4.0
            ShiftAddEnergy = 16.0 * 1.15e-6<pJ>
            CrossbarArea = 26.2144<um2>
            AdcArea = 693.633<um2>
            MuxArea = 45.9<um2>
            SubtractorArea = 13411.41498<um2>
            TempBufferArea = 484.644<um2>
            SramBitArea = 0.7391<um2 / bit>
            HTreeAreaPerTile = 216830.0<um2> * 2.0
            ReferenceAdcBits = 4
            AdcScaling = AdcScaling.Linear
            ReferenceMembraneBits = 22
            InputMemoryBitsPerValue = 22
        }

    /// SpikeSim's SRAM option: the RRAM constants with the SRAM crossbar read energy and area
    /// (both 671.089 in the script).
    let sram65nm =
        { rram65nm with
            Device = Device.Sram
            CrossbarReadEnergy = 671.089<pJ>
            CrossbarArea = 671.089<um2>
        }

    /// The 65 nm constants of a device.
    let ofDevice (d: Device) =
        match d with
        | Device.Rram -> rram65nm
        | Device.Sram -> sram65nm

    /// Every energy constant multiplied by k (a unit or calibration change; ratios are invariant).
    let scaleEnergy (k: float) (t: Technology) =
        { t with
            CrossbarReadEnergy = k * t.CrossbarReadEnergy
            AdcEnergy = k * t.AdcEnergy
            MuxEnergy = k * t.MuxEnergy
            SubtractorEnergy = k * t.SubtractorEnergy
            TempBufferEnergy = k * t.TempBufferEnergy
            TileBufferEnergy = k * t.TileBufferEnergy
            HTreeEnergy = k * t.HTreeEnergy
            MemoryFetchEnergy = k * t.MemoryFetchEnergy
            NeuronEnergy = k * t.NeuronEnergy
            ShiftAddEnergy = k * t.ShiftAddEnergy
        }

    /// ADC energy/area multiplier at b bits relative to ReferenceAdcBits.
    let adcFactor (t: Technology) (bits: int) =
        match t.AdcScaling with
        | AdcScaling.Fixed -> 1.0
        | AdcScaling.Linear -> float bits / float t.ReferenceAdcBits
        | AdcScaling.Exponential -> (2.0 ** float bits - 1.0) / (2.0 ** float t.ReferenceAdcBits - 1.0)
