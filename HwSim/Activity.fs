namespace SnnSpec.HwSim

open SnnSpec

/// Whether energy is charged per PE cycle regardless of input (the ELA) or scaled by measured
/// firing rates.
[<RequireQualifiedAccess>]
type Activity =
    /// Every PE cycle costs the full E_cycle (SpikeSim's ELA, activity-independent).
    | Dense
    /// Firing rates in [0, 1] keyed by a weight layer's name (the rate of its input spikes) or by a
    /// spiking population's name (applies to every weight layer that population feeds). Layers
    /// without a rate, and layers whose input is not spikes, are charged densely.
    | FiringRates of Map<string, float>

/// Activity-aware energy [R]: a layer with input firing rate r pays r × the event-driven part of
/// each PE cycle (crossbar read, ADC, mux, subtractor, buffers, H-tree, fetch, shift-add) plus the
/// whole neuron-update part (membranes leak and are updated every step). At r = 1 this is the dense
/// ELA energy.
module Activity =
    /// Rates from a forward run's FiringRates probe (spiking population → mean spikes per neuron per
    /// step), keeping the populations that feed a weight layer of the network (a population before
    /// average pooling or the readout feeds none).
    let ofProbe (net: Network) (rates: Map<string, float32>) =
        let sources = net.Layers |> List.choose (fun l -> l.InputSource) |> Set.ofList

        Activity.FiringRates(
            rates
            |> Map.filter (fun k _ -> sources.Contains k)
            |> Map.map (fun _ v -> float v)
        )

    /// Raises SnnSpecException for a rate outside [0, 1] or a key that names neither a weight layer
    /// nor a spiking population feeding one.
    let validate (net: Network) (a: Activity) =
        match a with
        | Activity.Dense -> ()
        | Activity.FiringRates rates ->
            let known =
                net.Layers
                |> List.collect (fun l -> l.Name :: Option.toList l.InputSource)
                |> Set.ofList

            for KeyValue(k, r) in rates do
                if not (r >= 0.0 && r <= 1.0) then
                    Errors.invalidArg "Activity" ("rate of '" + k + "'") r "a firing rate in [0, 1]"

                if not (known.Contains k) then
                    Errors.invalidArg
                        "Activity"
                        "layer"
                        k
                        (sprintf "a weight layer of '%s' or a spiking population feeding one" net.Name)

    /// The input firing rate charged for a layer: its own entry, else its source population's, else 1.
    let rate (a: Activity) (l: Layer) =
        match a with
        | Activity.Dense -> 1.0
        | Activity.FiringRates _ when not l.SpikeInput -> 1.0
        | Activity.FiringRates rates ->
            match rates.TryFind l.Name with
            | Some r -> r
            | None ->
                match l.InputSource |> Option.bind rates.TryFind with
                | Some r -> r
                | None -> 1.0
