namespace SnnSpec.HwSim

open System.Text
open SnnSpec

/// How operations are counted for TOPS/W and TOPS/mm² (methods.md §6.6 [R]: the SpikeSim and
/// MD-SNN op counts were not retrieved). MAC_l = C_in · C_out · k² · H · W per step.
[<RequireQualifiedAccess>]
type OpCount =
    /// 2 ops per MAC of the full dense layer at the conv output map (before pooling); the default.
    | DenseMacs
    /// 2 ops per MAC at the map the cycles are counted on (the mapping's cycle map: the pooled
    /// output, the ELA's H_o, under SpatialRule.PooledOutput; the conv output, so DenseMacs, under
    /// SpatialRule.ConvOutput).
    | OutputMacs
    /// 1 op per spike-driven accumulate: rate · MAC at the conv output map. Applies only to layers
    /// whose input is spikes; rates keyed like Activity.FiringRates and read by Activity.tryRate.
    | SynapticOps of Map<string, float>
    /// SynapticOps for spike-input layers and DenseMacs for the others (the directly encoded first layer).
    | Hybrid of Map<string, float>

/// A full cost report of one network on one accelerator at T steps.
type Report =
    {
        Mapping: Mapping
        Steps: int
        OpCount: OpCount
        Energy: EnergyReport
        Latency: LatencyReport
        Area: AreaReport
        /// Operations over all T steps per the op-count convention.
        Ops: float
    }

    member r.Network = r.Mapping.Network
    /// E (pJ).
    member r.E = r.Energy.Total
    /// D (ns).
    member r.D = r.Latency.Total
    /// A (µm²).
    member r.A = r.Area.Total
    /// EDP = E·D in J·s.
    member r.Edp = Units.joules r.E * Units.seconds r.D
    /// EDAP = E·D·A in J·s·mm².
    member r.Edap = r.Edp * Units.squareMillimetres r.A
    /// TOPS/W = OPS / E[J] / 10¹².
    member r.TopsPerWatt = r.Ops / Units.joules r.E / 1e12
    /// TOPS/mm² = OPS / (D[s] · A[mm²]) / 10¹².
    member r.TopsPerMm2 = r.Ops / (Units.seconds r.D * Units.squareMillimetres r.A) / 1e12

/// Candidate-versus-baseline ratios. Cost ratios are baseline / candidate (× lower); efficiency
/// ratios are candidate / baseline (× higher), so > 1 always favours the candidate.
type Comparison =
    {
        Network: string
        Baseline: Report
        Candidate: Report
        Energy: float
        Latency: float
        Area: float
        Edp: float
        Edap: float
        TopsPerWatt: float
        TopsPerMm2: float
    }

module Metrics =
    let private convention (o: OpCount) =
        match o with
        | OpCount.DenseMacs -> "DenseMacs"
        | OpCount.OutputMacs -> "OutputMacs"
        | OpCount.SynapticOps _ -> "SynapticOps"
        | OpCount.Hybrid _ -> "Hybrid"

    /// MAC_l per step at the conv output map.
    let macs (l: Layer) =
        float l.InChannels
        * float l.OutChannels
        * float (l.Kernel * l.Kernel)
        * float l.ConvHeight
        * float l.ConvWidth

    let private synaptic (o: OpCount) (rates: Map<string, float>) (l: Layer) =
        if not l.SpikeInput then
            raise (
                SnnSpecException(
                    sprintf
                        "Metrics: op-count convention %s does not apply to layer '%s': its input is not spikes (a directly encoded or average-pooled input); use OpCount.Hybrid or DenseMacs."
                        (convention o)
                        l.Name
                )
            )

        let rate =
            match Activity.tryRate rates l with
            | Some r -> r
            | None ->
                raise (
                    SnnSpecException(
                        sprintf
                            "Metrics: op-count convention %s needs a firing rate for layer '%s' (or its source population%s)."
                            (convention o)
                            l.Name
                            (match l.InputSource with
                             | Some s -> " '" + s + "'"
                             | None -> "")
                    )
                )

        if not (rate >= 0.0 && rate <= 1.0) then
            Errors.invalidArg "Metrics" ("rate of '" + l.Name + "'") rate "a firing rate in [0, 1]"

        rate * macs l

    /// Operations of one layer per step under a convention.
    let layerOps (o: OpCount) (m: LayerMapping) =
        let l = m.Layer

        match o with
        | OpCount.DenseMacs -> 2.0 * macs l
        | OpCount.OutputMacs ->
            2.0
            * float l.InChannels
            * float l.OutChannels
            * float (l.Kernel * l.Kernel)
            * float m.MapHeight
            * float m.MapWidth
        | OpCount.SynapticOps rates -> synaptic o rates l
        | OpCount.Hybrid rates -> if l.SpikeInput then synaptic o rates l else 2.0 * macs l

    /// Operations over all T steps.
    let ops (o: OpCount) (steps: int) (m: Mapping) =
        float steps * (m.Layers |> List.sumBy (layerOps o))

    /// Energy, latency, area and op count of a mapping at T steps.
    let evaluateWith (opCount: OpCount) (activity: Activity) (steps: int) (m: Mapping) : Report =
        let energy = Energy.estimateWith activity steps m

        {
            Mapping = m
            Steps = steps
            OpCount = opCount
            Energy = energy
            Latency = Latency.estimate steps m
            Area = Area.estimate m
            Ops = ops opCount steps m
        }

    /// The ELA's dense mode with the default op count (DenseMacs).
    let evaluate (steps: int) (m: Mapping) =
        evaluateWith OpCount.DenseMacs Activity.Dense steps m

    /// Ratios of two reports of the same network (layer names and geometry must agree; T, precision,
    /// accelerator and activity may differ). Raises SnnSpecException naming the first difference.
    let compare (baseline: Report) (candidate: Report) : Comparison =
        let a = baseline.Network
        let b = candidate.Network
        let la = a.Layers |> List.map Layer.signature
        let lb = b.Layers |> List.map Layer.signature

        if la <> lb then
            let detail =
                if List.length la <> List.length lb then
                    sprintf "%d weight layers against %d" la.Length lb.Length
                else
                    let i = List.zip la lb |> List.findIndex (fun (x, y) -> x <> y)
                    sprintf "layer '%s' differs from layer '%s'" a.Layers[i].Name b.Layers[i].Name

            raise (
                SnnSpecException(
                    sprintf
                        "Metrics.compare: the reports are of different networks ('%s' and '%s'): %s."
                        a.Name
                        b.Name
                        detail
                )
            )

        {
            Network = a.Name
            Baseline = baseline
            Candidate = candidate
            Energy = baseline.E / candidate.E
            Latency = baseline.D / candidate.D
            Area = baseline.A / candidate.A
            Edp = baseline.Edp / candidate.Edp
            Edap = baseline.Edap / candidate.Edap
            TopsPerWatt = candidate.TopsPerWatt / baseline.TopsPerWatt
            TopsPerMm2 = candidate.TopsPerMm2 / baseline.TopsPerMm2
        }

    /// A readable summary of a report: mapping table, totals, metrics, per-layer energy and latency,
    /// and the energy and area breakdowns by component with their shares.
    let summary (r: Report) : string =
        let sb = StringBuilder()
        let line (s: string) = sb.AppendLine s |> ignore

        let share (name: string) (v: float) (total: float) =
            line (sprintf "  %-16s %16.6g %6.2f%%" name v (100.0 * v / total))

        line (sprintf "%s on %A crossbars, T = %d" r.Network.Name r.Mapping.Accelerator.Technology.Device r.Steps)
        sb.Append(Mapping.table r.Mapping) |> ignore
        line (sprintf "E %.6g pJ   D %.6g ns   A %.6g um2" (float r.E) (float r.D) (float r.A))
        line (sprintf "EDP %.6g J s   EDAP %.6g J s mm2" r.Edp r.Edap)
        line (sprintf "TOPS/W %.6g   TOPS/mm2 %.6g   (op count %s)" r.TopsPerWatt r.TopsPerMm2 (convention r.OpCount))
        line "per layer: energy (pJ), input rate, latency (ns)"

        List.zip r.Energy.Layers r.Latency.Layers
        |> List.iter (fun (e, d) ->
            line (sprintf "  %-28s %16.6g %6.3f %16.6g" e.Layer (float e.Total) e.InputRate (float d.Latency)))

        let e = r.Energy.Components
        let et = float e.Total
        line "energy by component (pJ)"

        for name, v in
            [
                "crossbar", e.Crossbar
                "ADC", e.Adc
                "mux", e.Mux
                "subtractor", e.Subtractor
                "temp buffer", e.TempBuffer
                "tile buffer", e.TileBuffer
                "H-tree", e.HTree
                "memory fetch", e.MemoryFetch
                "neuron", e.Neuron
                "shift-add", e.ShiftAdd
            ] do
            share name (float v) et

        let a = r.Area.Components
        let at = float a.Total
        line "area by component (um2)"

        for name, v in
            [
                "crossbars", a.Crossbars
                "ADCs", a.Adcs
                "muxes", a.Muxes
                "subtractors", a.Subtractors
                "temp buffers", a.TempBuffers
                "tile buffers", a.TileBuffers
                "H-tree", a.HTree
                "input memory", a.InputMemory
                "membrane memory", a.MembraneMemory
            ] do
            share name (float v) at

        sb.ToString()

    /// The ratios as text.
    let comparisonSummary (c: Comparison) : string =
        sprintf
            "%s: energy %.4gx lower, latency %.4gx lower, area %.4gx lower, EDP %.4gx lower, EDAP %.4gx lower, TOPS/W %.4gx higher, TOPS/mm2 %.4gx higher"
            c.Network
            c.Energy
            c.Latency
            c.Area
            c.Edp
            c.Edap
            c.TopsPerWatt
            c.TopsPerMm2
