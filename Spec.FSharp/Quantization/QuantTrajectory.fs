namespace SnnSpec

open System

/// How one spiking population of a quantized SNN strays from the same population of its float
/// twin, per time step (index t − 1), both models run on the same batch in eval mode.
type PopulationTrajectory =
    {
        /// The Spiking layer's full name.
        Name: string
        /// Fraction of equal spikes, mean over batch and neurons of [S_q(t) = S_f(t)]; 1 = identical.
        SpikeAgreement: float[]
        /// Relative membrane error ‖H_q(t) − H_f(t)‖₂ / ‖H_f(t)‖₂ over batch and neurons, H after
        /// charging and before reset (0 when both are 0, +∞ when only the float one is).
        MembraneError: float[]
        /// Mean spikes per neuron of the float twin at step t.
        FloatRate: float[]
        /// Mean spikes per neuron of the quantized model at step t.
        QuantizedRate: float[]
    }

/// A quantized SNN against its float twin on one batch: how the trajectories part through depth
/// (populations in forward order) and time, and what it does to the prediction.
type QuantTrajectoryReport =
    {
        Populations: PopulationTrajectory list
        /// Relative logit error ‖z_q(t) − z_f(t)‖₂ / ‖z_f(t)‖₂ over batch and classes at step t.
        LogitError: float[]
        /// Fraction of samples whose prediction read at t (argmax of the mean logits over steps
        /// 1…t) is the same in both models.
        PredictionAgreement: float[]
    }

    /// One number for how far the quantized model strays: the mean over populations and steps of
    /// the membrane error plus the mean over steps of the logit error (0 = the float trajectory).
    /// A step whose float membranes or logits are all 0 while the quantized ones are not (an
    /// infinite relative error) counts as 1000, so that such steps still rank but do not swamp the
    /// others.
    member r.Error =
        let capped (a: float[]) =
            a |> Array.averageBy (fun e -> min e 1000.0)

        let pops =
            if r.Populations.IsEmpty then
                0.0
            else
                r.Populations |> List.averageBy (fun p -> capped p.MembraneError)

        pops + capped r.LogitError

/// The "quantized vs float trajectory" diagnostic: low-bit membranes can send an SNN down a
/// different spike train from its float model, and the divergence compounds over layers and steps.
/// `compare` measures it population by population and step by step, so a user sees where a bit
/// width or a layer breaks the dynamics before training or deploying it.
module QuantTrajectory =
    /// The float twin of a model made by Model.quantize: the same architecture, mode, parameters and
    /// buffers without the quantization plan (every "&lt;layer&gt;.quant.*" buffer) and without the
    /// scales it added (the "&lt;layer&gt;.alpha" of a Conv2d, Linear or Spiking layer). A folded Norm
    /// runs unfolded again with its running statistics, which in eval mode computes the folded
    /// float layer. <c>floatTwin (Model.quantize cfg m) = m</c>.
    let floatTwin (m: Model) : Model =
        let st = QuantPlan.structure m.Architecture

        let weights = [ for name, _, _ in st.WeightLayers -> name ]
        let populations = [ for KeyValue(name, _) in st.Feeding -> name ]

        let scales = set [ for n in weights @ populations -> n + ".alpha" ]

        let plan =
            set (
                List.collect QuantPlan.weightKeys weights
                @ List.collect QuantPlan.membraneKeys populations
            )

        let keep (drop: Set<string>) (ps: Parameters) =
            Parameters.ofList (Parameters.toList ps |> List.filter (fun (n, _) -> not (drop.Contains n)))

        { m with
            Parameters = keep scales m.Parameters
            Buffers = keep plan m.Buffers
        }

    let private perStep (steps: int) (t: Tensor) =
        let values = t.ToArray()
        let n = values.Length / steps
        Array.init steps (fun s -> ArraySegment(values, s * n, n))

    /// The spikes and membranes of every population and the logits, split per step.
    type private Observation =
        {
            Spikes: ArraySegment<float32>[] list
            Membranes: ArraySegment<float32>[] list
            Logits: ArraySegment<float32>[]
        }

    let private relativeError (a: ArraySegment<float32>) (b: ArraySegment<float32>) =
        let mutable diff = 0.0
        let mutable norm = 0.0

        for i in 0 .. a.Count - 1 do
            let d = float a[i] - float b[i]
            diff <- diff + d * d
            norm <- norm + float b[i] * float b[i]

        if diff = 0.0 then 0.0
        elif norm = 0.0 then Double.PositiveInfinity
        else sqrt (diff / norm)

    let private check (op: string) (m: Model) =
        if not (Model.quantPlan m).IsQuantized then
            Errors.invalidArg
                op
                "model"
                m.Architecture.Name
                "a model made by Model.quantize (this one has no quantization plan; there is nothing to compare)"

        match m.Mode with
        | ExecutionMode.Snn t -> t
        | ExecutionMode.Ann ->
            Errors.invalidArg
                op
                "model"
                m.Architecture.Name
                "an SNN (this one runs as its ANN twin, which has no spikes or membranes); use Model.withSteps"

    let private observe (steps: int) (names: string list) (m: Model) (x: Tensor) =
        let probes =
            { ProbeRequest.None with
                Membranes = Set.ofList names
                Spikes = Set.ofList names
            }

        Diff.noGrad (fun () ->
            use _ = TensorScope.Begin()

            let out =
                Model.forward
                    { ForwardContext.Eval with
                        Probes = probes
                    }
                    m
                    x

            let split (probe: Map<string, Tensor>) =
                names |> List.map (fun n -> perStep steps probe[n])

            {
                Spikes = split out.Spikes
                Membranes = split out.Membranes
                Logits = perStep steps out.Logits
            })

    let private report (steps: int) (batch: int) (names: string list) (q: Observation) (f: Observation) =
        let mean (s: ArraySegment<float32>) =
            if s.Count = 0 then
                0.0
            else
                Seq.sumBy float s / float s.Count

        let population i name =
            let sq, sf, hq, hf = q.Spikes[i], f.Spikes[i], q.Membranes[i], f.Membranes[i]

            {
                Name = name
                SpikeAgreement =
                    Array.init steps (fun t ->
                        let a, b = sq[t], sf[t]

                        if a.Count = 0 then
                            1.0
                        else
                            let mutable equal = 0

                            for i in 0 .. a.Count - 1 do
                                if a[i] = b[i] then
                                    equal <- equal + 1

                            float equal / float a.Count)
                MembraneError = Array.init steps (fun t -> relativeError hq[t] hf[t])
                FloatRate = Array.init steps (fun t -> mean sf[t])
                QuantizedRate = Array.init steps (fun t -> mean sq[t])
            }

        // Running sums of the logits: the prediction at t is argmax of Σ_{τ ≤ t} z_τ (the mean's argmax).
        let predictions (logits: ArraySegment<float32>[]) =
            let k = logits[0].Count / batch
            let sums = Array.zeroCreate<float>(batch * k)

            Array.init steps (fun t ->
                let z = logits[t]

                for i in 0 .. sums.Length - 1 do
                    sums[i] <- sums[i] + float z[i]

                Array.init batch (fun s ->
                    let mutable best = 0

                    for c in 1 .. k - 1 do
                        if sums[s * k + c] > sums[s * k + best] then
                            best <- c

                    best))

        let pq, pf = predictions q.Logits, predictions f.Logits

        {
            Populations = List.mapi population names
            LogitError = Array.init steps (fun t -> relativeError q.Logits[t] f.Logits[t])
            PredictionAgreement =
                Array.init steps (fun t ->
                    let same = Array.fold2 (fun n a b -> if a = b then n + 1 else n) 0 pq[t] pf[t]
                    float same / float batch)
        }

    let private batchOf (m: Model) (x: Tensor) =
        x.Shape[x.Rank - m.Architecture.InputShape.Length - 1]

    /// Runs the quantized model and its float twin (floatTwin) on <c>x</c> ([B, …] or [T, B, …]) in
    /// eval mode and compares every Spiking population's spikes and membranes at every step, the
    /// logits, and the prediction at every t. Needs a model made by Model.quantize running as an SNN.
    let compare (quantized: Model) (x: Tensor) : QuantTrajectoryReport =
        let steps = check "QuantTrajectory.compare" quantized
        let names = Architecture.spikingNames quantized.Architecture
        let q = observe steps names quantized x
        let f = observe steps names (floatTwin quantized) x
        report steps (batchOf quantized x) names q f

    /// Post-training scale search. Model.calibrateScales sets MINT's α₀ = 2·mean|W'|/√Q, the
    /// starting point quantization-aware training learns from; it shrinks as 1/√Q, so without
    /// training a 4- or 8-bit twin clips most weights (and, in share mode, every membrane to ±α).
    /// This search instead takes each quantized weight layer in forward order and sets its α to the
    /// candidate among {k/K · max|tanh W'| : k = 1…K} ∪ {its current α} that minimises the
    /// trajectory error (QuantTrajectoryReport.Error) of the whole model on <c>x</c>, the layers
    /// before it already set. W' is what the layer's quantizer receives in eval mode (for a
    /// folded conv, the weight folded with the running statistics). Each step keeps or lowers the
    /// error, so the result strays no further than the model given. K·L + 1 forward passes of the
    /// quantized model on x, for L quantized layers; membranes with their own scale keep it. Both
    /// runs keep every population's spikes and membranes for all of x, so x should be a calibration
    /// batch (a few hundred images), not a dataset.
    let fitScales (candidates: int) (x: Tensor) (m: Model) : Model =
        let op = "QuantTrajectory.fitScales"
        let steps = check op m

        if candidates < 1 then
            Errors.invalidArg op "candidates" candidates "at least 1 (grid points per layer, e.g. 16)"

        let names = Architecture.spikingNames m.Architecture
        // The float run first: it refuses an input of the wrong shape by name.
        let reference = observe steps names (floatTwin m) x
        let batch = batchOf m x

        let error (m: Model) =
            (report steps batch names (observe steps names m x) reference).Error

        let inputs =
            Diff.noGrad (fun () ->
                Forward.quantizerInputs m.Architecture m.Mode ForwardContext.Eval m.Parameters m.Buffers x
                |> Map.map (fun _ t -> t.ToArray()))

        let plan = Model.quantPlan m

        let layers =
            (QuantPlan.structure m.Architecture).WeightLayers
            |> List.map (fun (n, _, _) -> n)
            |> List.filter (fun n ->
                match plan.Weights.TryFind n with
                | Some w -> w.Weight <> Bits.FullPrecision
                | None -> false)

        let withAlpha (m: Model) (key: string) (alpha: float32) =
            { m with
                Parameters =
                    m.Parameters
                    |> Parameters.map (fun n t -> if n = key then Tensor.scalar alpha else t)
            }

        let mutable current = m
        let mutable best = error m

        for layer in layers do
            let key = layer + ".alpha"
            let top = inputs[layer] |> Array.fold (fun acc v -> max acc (abs (tanh v))) 0.0f

            if top > 0.0f then
                for k in 1..candidates do
                    let trial = withAlpha current key (top * float32 k / float32 candidates)
                    let e = error trial

                    if e < best then
                        best <- e
                        current <- trial

        current
