namespace SnnSpec.HwSim

open SnnSpec

/// Energy split by chip component (pJ).
type EnergyComponents =
    {
        Crossbar: float<pJ>
        Adc: float<pJ>
        Mux: float<pJ>
        Subtractor: float<pJ>
        TempBuffer: float<pJ>
        TileBuffer: float<pJ>
        HTree: float<pJ>
        MemoryFetch: float<pJ>
        Neuron: float<pJ>
        ShiftAdd: float<pJ>
    }

    member c.Total =
        c.Crossbar
        + c.Adc
        + c.Mux
        + c.Subtractor
        + c.TempBuffer
        + c.TileBuffer
        + c.HTree
        + c.MemoryFetch
        + c.Neuron
        + c.ShiftAdd

    /// The components that are spent only when input spikes arrive (all but the neuron update).
    member c.EventDriven = c.Total - c.Neuron

module EnergyComponents =
    let zero =
        {
            Crossbar = 0.0<pJ>
            Adc = 0.0<pJ>
            Mux = 0.0<pJ>
            Subtractor = 0.0<pJ>
            TempBuffer = 0.0<pJ>
            TileBuffer = 0.0<pJ>
            HTree = 0.0<pJ>
            MemoryFetch = 0.0<pJ>
            Neuron = 0.0<pJ>
            ShiftAdd = 0.0<pJ>
        }

    let add (a: EnergyComponents) (b: EnergyComponents) =
        {
            Crossbar = a.Crossbar + b.Crossbar
            Adc = a.Adc + b.Adc
            Mux = a.Mux + b.Mux
            Subtractor = a.Subtractor + b.Subtractor
            TempBuffer = a.TempBuffer + b.TempBuffer
            TileBuffer = a.TileBuffer + b.TileBuffer
            HTree = a.HTree + b.HTree
            MemoryFetch = a.MemoryFetch + b.MemoryFetch
            Neuron = a.Neuron + b.Neuron
            ShiftAdd = a.ShiftAdd + b.ShiftAdd
        }

    /// Event-driven components × rate, neuron update × neuronFactor.
    let scale (rate: float) (neuronFactor: float) (c: EnergyComponents) =
        {
            Crossbar = rate * c.Crossbar
            Adc = rate * c.Adc
            Mux = rate * c.Mux
            Subtractor = rate * c.Subtractor
            TempBuffer = rate * c.TempBuffer
            TileBuffer = rate * c.TileBuffer
            HTree = rate * c.HTree
            MemoryFetch = rate * c.MemoryFetch
            Neuron = neuronFactor * c.Neuron
            ShiftAdd = rate * c.ShiftAdd
        }

/// One layer's energy over all T steps.
type LayerEnergy =
    {
        Layer: string
        /// PE cycles over all steps, cycles_l · T.
        Cycles: int64
        /// Input firing rate charged (1 in dense mode).
        InputRate: float
        Components: EnergyComponents
    }

    member l.Total = l.Components.Total

/// Network energy over T steps, per layer and per component.
type EnergyReport =
    {
        Steps: int
        Activity: Activity
        Layers: LayerEnergy list
        Components: EnergyComponents
    }

    member r.Total = r.Components.Total

/// The ELA energy model (methods.md §6.3), with n_adc = ⌈X / mux⌉ ADCs per PE (8 at X = 64):
/// - E_PEunit = P·e_xbar + n_adc·(e_adc + e_mux), P crossbars per PE (k² = 9)       [32.879 pJ]
/// - E_cycle = e_htree + e_fetch + e_neuron + n_adc·E_PEunit + n_adc·16·e_sub + n_adc·e_tmp + e_tilebuf
///                                                                                  [828.4861472 pJ]
/// - E_l = cycles_l · T · E_cycle; E = Σ_l E_l.
/// HwSim's extensions, each 1 at the ELA's configuration: e_xbar × (X/64)², e_adc × ADC-bit factor,
/// e_neuron × b_u/b_ref, a shift-and-add n_adc·e_sa per cycle of a sliced layer (§6.9), and the
/// activity scaling of Activity.
module Energy =
    /// Energy of one PE cycle of a layer whose weights span the given number of slices, by component.
    let perCycle (acc: Accelerator) (slices: int) : EnergyComponents =
        let t = acc.Technology
        let n = float (Accelerator.adcsPerPe acc)
        let xbar = Accelerator.crossbarFactor acc * t.CrossbarReadEnergy
        let adc = Technology.adcFactor t acc.AdcBits * t.AdcEnergy

        {
            Crossbar = n * float acc.CrossbarsPerPe * xbar
            Adc = n * n * adc
            Mux = n * n * t.MuxEnergy
            Subtractor = n * float t.SubtractorOpsPerAdcGroup * t.SubtractorEnergy
            TempBuffer = n * t.TempBufferEnergy
            TileBuffer = t.TileBufferEnergy
            HTree = t.HTreeEnergy
            MemoryFetch = t.MemoryFetchEnergy
            Neuron = Precision.membraneFactor t acc.Precision * t.NeuronEnergy
            ShiftAdd = (if slices > 1 then n * t.ShiftAddEnergy else 0.0<pJ>)
        }

    /// E_PEunit = P·e_xbar + n_adc·(e_adc + e_mux), the read unit the ELA repeats n_adc times per cycle.
    let peUnit (acc: Accelerator) : float<pJ> =
        let c = perCycle acc 1
        let n = float (Accelerator.adcsPerPe acc)
        (c.Crossbar + c.Adc + c.Mux) / n

    /// E_cycle of an unsliced layer (828.4861472 pJ at the ELA defaults).
    let cycleEnergy (acc: Accelerator) : float<pJ> = (perCycle acc 1).Total

    /// Energy of a mapping over `steps` time steps, charged per Activity.
    let estimateWith (activity: Activity) (steps: int) (m: Mapping) : EnergyReport =
        if steps <= 0 then
            Errors.invalidArg "Energy.estimate" "steps" steps "a positive number of time steps"

        Activity.validate m.Network activity

        let layers =
            m.Layers
            |> List.map (fun l ->
                let cycles = l.CyclesPerStep * int64 steps
                let r = Activity.rate activity l.Layer

                {
                    Layer = l.Layer.Name
                    Cycles = cycles
                    InputRate = r
                    Components =
                        perCycle m.Accelerator l.Slices
                        |> EnergyComponents.scale (float cycles * r) (float cycles)
                })

        {
            Steps = steps
            Activity = activity
            Layers = layers
            Components =
                layers
                |> List.fold (fun acc l -> EnergyComponents.add acc l.Components) EnergyComponents.zero
        }

    /// Dense (activity-independent) energy, the ELA's mode.
    let estimate (steps: int) (m: Mapping) = estimateWith Activity.Dense steps m
