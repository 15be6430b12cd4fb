namespace SnnSpec.HwSim

open SnnSpec

/// One layer's share of the pipelined latency.
type LayerLatency =
    {
        Layer: string
        /// s_w · C_out · H · W, the ELA's PE cycles per step of a layer (one per output neuron).
        OutputsPerStep: int64
        /// PE cycles this layer adds to D over all steps: ⌊ρ · outputs⌋ · T, or outputs · T for the last layer.
        Charged: int64
        Latency: float<ns>
    }

type LatencyReport =
    {
        Steps: int
        /// t_PE = ClocksPerPeCycle / f.
        PeCycleTime: float<ns>
        Layers: LayerLatency list
        /// Σ charged PE cycles.
        PeCycles: int64
    }

    member r.Total: float<ns> = float r.PeCycles * r.PeCycleTime

/// The ELA latency model (methods.md §6.5), layers pipelined in mapping order: layer l+1 starts
/// once layer l has produced a fraction ρ (0.75) of its outputs, so
///   D = (n_L + Σ_{l<L} ⌊ρ · n_l⌋) · T · t_PE,   n_l = s_w · C_out · H_o² (per step).
/// T enters once. The script's latency_gen multiplies by the time steps a second time (SpikeSim
/// issue #4); HwSim does not, so D is linear in T. The overlap applies to any number of layers (the
/// script tabulates it for at most 12).
module Latency =
    let estimate (steps: int) (m: Mapping) : LatencyReport =
        if steps <= 0 then
            Errors.invalidArg "Latency.estimate" "steps" steps "a positive number of time steps"

        let tpe = Accelerator.peCycleTime m.Accelerator
        let last = List.length m.Layers - 1

        let layers =
            m.Layers
            |> List.mapi (fun i l ->
                let perStep =
                    if i = last then
                        l.OutputsPerStep
                    else
                        int64 (floor (m.Accelerator.PipelineOverlap * float l.OutputsPerStep))

                let charged = perStep * int64 steps

                {
                    Layer = l.Layer.Name
                    OutputsPerStep = l.OutputsPerStep
                    Charged = charged
                    Latency = float charged * tpe
                })

        {
            Steps = steps
            PeCycleTime = tpe
            Layers = layers
            PeCycles = layers |> List.sumBy (fun l -> l.Charged)
        }
