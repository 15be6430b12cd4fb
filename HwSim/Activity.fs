namespace SnnSpec.HwSim

open System
open SnnSpec

/// Whether energy is charged per PE cycle regardless of input (the ELA) or scaled by measured
/// firing rates.
[<RequireQualifiedAccess>]
type Activity =
    /// Every PE cycle costs the full E_cycle (SpikeSim's ELA, activity-independent).
    | Dense
    /// Firing rates in [0, 1] keyed by a weight layer's name (the rate of its input spikes), by a
    /// spiking population's name (applies to every weight layer that population feeds), or by
    /// RateKey.maxPooled of a population (the rate after the max-pool that reads its spikes). Layers
    /// without a rate, and layers whose input is not spikes, are charged densely.
    | FiringRates of Map<string, float>

/// Activity-aware energy [R]: a layer with input firing rate r pays r × the event-driven part of
/// each PE cycle (crossbar read, ADC, mux, subtractor, buffers, H-tree, fetch, shift-add) plus the
/// whole neuron-update part (membranes leak and are updated every step). At r = 1 this is the dense
/// ELA energy.
module Activity =
    /// The keys a rate may have in a network: a weight layer's name, the population feeding one, or
    /// that population's max-pooled spikes (RateKey.maxPooled).
    let private keys (net: Network) =
        net.Layers
        |> List.collect (fun l ->
            l.Name
            :: (match l.InputSource with
                | Some src -> [ src; RateKey.maxPooled src ]
                | None -> []))
        |> Set.ofList

    /// Rates from a forward run's FiringRates probe (spiking population → mean spikes per neuron per
    /// step, RateKey.maxPooled entries) or given per weight layer, keeping the keys that name a weight
    /// layer, a population feeding one, or its max-pooled spikes; others (a population before average
    /// pooling or the readout) are dropped.
    let ofProbe (net: Network) (rates: Map<string, float32>) =
        let known = keys net

        Activity.FiringRates(
            rates
            |> Map.filter (fun k _ -> known.Contains k)
            |> Map.map (fun _ v -> float v)
        )

    /// Raises SnnSpecException for a rate outside [0, 1] or a key that names neither a weight layer
    /// nor a spiking population feeding one.
    let validate (net: Network) (a: Activity) =
        match a with
        | Activity.Dense -> ()
        | Activity.FiringRates rates ->
            let known = keys net

            for KeyValue(k, r) in rates do
                if not (r >= 0.0 && r <= 1.0) then
                    Errors.invalidArg "Activity" ("rate of '" + k + "'") r "a firing rate in [0, 1]"

                if not (known.Contains k) then
                    Errors.invalidArg
                        "Activity"
                        "layer"
                        k
                        (sprintf "a weight layer of '%s' or a spiking population feeding one" net.Name)

    /// The input firing rate of a layer from rates keyed as in Activity.FiringRates: its own entry;
    /// else, behind one max-pool, the measured pooled rate (RateKey.maxPooled); else its source
    /// population's rate r, which behind max-pools of windows w₁, w₂, … becomes 1 − (1 − r)^(w₁·w₂·…),
    /// the OR of independent spikes (an upper estimate: neighbouring spikes are correlated); None
    /// when no entry applies.
    let tryRate (rates: Map<string, float>) (l: Layer) : float option =
        match rates.TryFind l.Name, l.InputSource with
        | Some r, _ -> Some r
        | None, None -> None
        | None, Some src ->
            match l.InputPooling, rates.TryFind(RateKey.maxPooled src), rates.TryFind src with
            | [ _ ], Some pooled, _ -> Some pooled
            | [], _, r -> r
            | windows, _, Some r -> Some(1.0 - Math.Pow(1.0 - r, float (List.fold (*) 1 windows)))
            | _, _, None -> None

    /// The input firing rate charged for a layer: tryRate, else 1 (dense); 1 for a layer whose
    /// input is not spikes.
    let rate (a: Activity) (l: Layer) =
        match a with
        | Activity.Dense -> 1.0
        | Activity.FiringRates _ when not l.SpikeInput -> 1.0
        | Activity.FiringRates rates -> tryRate rates l |> Option.defaultValue 1.0
