namespace SnnSpec.Distillation

open System
open SnnSpec

/// What a loss term sees of a teacher or a student run: per-step logits [T, B, K] (an ANN: [1, B, K]
/// or [B, K]) and, by probe name, membranes [T, B, …], spikes [T, B, …] and tapped features [T, B, …].
type KdOutputs =
    {
        Logits: Tensor
        Membranes: Map<string, Tensor>
        Spikes: Map<string, Tensor>
        Taps: Map<string, Tensor>
    }

/// One weighted term of a distillation objective. <c>Loss teacher student labels</c> returns a
/// scalar; any F# function of that type plugs in and is differentiated automatically. Terms are
/// evaluated with the teacher's outputs detached (<c>LossTerm.evaluate</c>).
type LossTerm =
    {
        Name: string
        Weight: float32
        Loss: KdOutputs -> KdOutputs -> int[] -> Tensor
    }

module KdOutputs =
    /// Logits only (no probes).
    let ofLogits (logits: Tensor) =
        {
            Logits = logits
            Membranes = Map.empty
            Spikes = Map.empty
            Taps = Map.empty
        }

    /// The outputs of a forward run (Model.forward / Forward.run).
    let ofForward (o: ForwardOutput) =
        {
            Logits = o.Logits
            Membranes = o.Membranes
            Spikes = o.Spikes
            Taps = o.Taps
        }

    /// Every tensor detached (no gradient can flow through them).
    let detach (o: KdOutputs) =
        {
            Logits = Diff.detach o.Logits
            Membranes = o.Membranes |> Map.map (fun _ t -> Diff.detach t)
            Spikes = o.Spikes |> Map.map (fun _ t -> Diff.detach t)
            Taps = o.Taps |> Map.map (fun _ t -> Diff.detach t)
        }

    /// Applies f to every tensor with its kind ("logits", "membrane", "spikes", "tap") and name.
    let map (f: string -> string -> Tensor -> Tensor) (o: KdOutputs) =
        {
            Logits = f "logits" "logits" o.Logits
            Membranes = o.Membranes |> Map.map (f "membrane")
            Spikes = o.Spikes |> Map.map (f "spikes")
            Taps = o.Taps |> Map.map (f "tap")
        }

    /// The tensors in a fixed order: logits, then membranes, spikes and taps by name.
    let tensors (o: KdOutputs) =
        [|
            yield o.Logits
            for KeyValue(_, t) in o.Membranes -> t
            for KeyValue(_, t) in o.Spikes -> t
            for KeyValue(_, t) in o.Taps -> t
        |]

    /// Outputs with o's structure and the given tensors (the order of <c>tensors</c>).
    let withTensors (o: KdOutputs) (ts: Tensor[]) =
        let mutable i = 0

        let next () =
            i <- i + 1
            ts[i - 1]

        let logits = next ()
        let pick (m: Map<string, Tensor>) = m |> Map.map (fun _ _ -> next ())
        let mem = pick o.Membranes
        let spk = pick o.Spikes
        let taps = pick o.Taps

        {
            Logits = logits
            Membranes = mem
            Spikes = spk
            Taps = taps
        }

    let private find (op: string) (kind: string) (m: Map<string, Tensor>) (side: string) (name: string) =
        match Map.tryFind name m with
        | Some t -> t
        | None ->
            Errors.invalidArg
                op
                (sprintf "%s %s" side kind)
                name
                (sprintf
                    "one of the %s's recorded %s: %s (add a probe for it or name another)"
                    side
                    kind
                    (if m.IsEmpty then
                         "(none)"
                     else
                         String.concat ", " (Map.keys m)))

    /// A membrane by probe name; the error lists the recorded ones.
    let membrane (op: string) (side: string) (name: string) (o: KdOutputs) =
        find op "membranes" o.Membranes side name

    /// A spike tensor by probe name.
    let spikes (op: string) (side: string) (name: string) (o: KdOutputs) = find op "spikes" o.Spikes side name

    /// A tapped feature by name.
    let tap (op: string) (side: string) (name: string) (o: KdOutputs) = find op "taps" o.Taps side name

    /// [T, B, K] logits read out by their time-mean [B, K]; [B, K] returned as is.
    let meanLogits (z: Tensor) =
        match z.Rank with
        | 3 -> Tensor.meanDims [| 0 |] false z
        | 2 -> z
        | _ -> Errors.invalidArg "KdOutputs" "logits shape" (Errors.showShape z.ShapeRef) "[T, B, K] or [B, K]"

    /// [B, K] logits as one step [1, B, K]; [T, B, K] returned as is.
    let stepLogits (z: Tensor) =
        match z.Rank with
        | 2 -> Tensor.unsqueeze 0 z
        | 3 -> z
        | _ -> Errors.invalidArg "KdOutputs" "logits shape" (Errors.showShape z.ShapeRef) "[T, B, K] or [B, K]"

/// Built-in loss terms and the evaluation of a weighted list of them.
[<RequireQualifiedAccess>]
module LossTerm =
    /// A term from any function (teacher outputs, student outputs, labels) → scalar. The weight
    /// must be finite and ≥ 0 (an error otherwise, naming the term).
    let create (name: string) (weight: float32) (loss: KdOutputs -> KdOutputs -> int[] -> Tensor) =
        if not (weight >= 0.0f && Single.IsFinite weight) then
            Errors.invalidArg
                "LossTerm.create"
                (sprintf "weight of term '%s'" name)
                weight
                "a finite weight >= 0 (drop the term instead of a negative weight)"

        {
            Name = name
            Weight = weight
            Loss = loss
        }

    /// <c>create</c> under the name users expect for their own functions.
    let custom name weight loss = create name weight loss

    /// weight · loss(detach teacher, student, labels).
    let evaluate (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
        let v = term.Loss (KdOutputs.detach teacher) student labels

        if v.Numel <> 1 then
            Errors.invalidArg
                "LossTerm.evaluate"
                (sprintf "result of term '%s'" term.Name)
                (Errors.showShape v.ShapeRef)
                "a scalar (one element); reduce the loss with Tensor.mean or Tensor.sum"

        v * term.Weight

    /// Σ_terms weight · loss, and each term's weighted value (for logging).
    let totalWithParts (terms: LossTerm list) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
        if List.isEmpty terms then
            Errors.invalidArg "LossTerm.total" "terms" "[]" "at least one loss term"

        let parts = terms |> List.map (fun t -> t.Name, evaluate t teacher student labels)
        parts |> List.map snd |> List.reduce (+), parts

    /// Σ_terms weight · loss.
    let total terms teacher student labels =
        fst (totalWithParts terms teacher student labels)

    /// The student's cross-entropy (label smoothing ε) on its time-mean logits; ignores the teacher.
    let crossEntropy (labelSmoothing: float32) (weight: float32) =
        create "ce" weight (fun _ s y -> FeatureKd.crossEntropy labelSmoothing s.Logits y)

    /// Per-step CE (TWCE / TET): (1/T) Σ_t CE(z_t, y).
    let perStepCrossEntropy (weight: float32) =
        create "twce" weight (fun _ s y -> TemporalKd.twce (KdOutputs.stepLogits s.Logits) y)

    /// Logit KD KL_τ(z̄_T ‖ z̄_S) on the time-mean logits of both sides.
    let logitKd (tau: float32) (weight: float32) =
        create "kd" weight (fun t s _ -> LogitKd.kl tau (KdOutputs.meanLogits t.Logits) (KdOutputs.meanLogits s.Logits))

    /// WSLD on the time-mean logits (its own w_dist is 1; the term's weight scales it).
    let wsld (tau: float32) (weight: float32) =
        create "wsld" weight (fun t s y ->
            LogitKd.wsld tau 1.0f (KdOutputs.meanLogits t.Logits) (KdOutputs.meanLogits s.Logits) y)

    /// Temporal-wise KD TWCE + α·TWKL + β·TWSD (teacher logits [B, K], [1, B, K] or [T_T, B, K]).
    let temporal (cfg: TemporalConfig) =
        create "temporal" 1.0f (fun t s y -> TemporalKd.temporal cfg t.Logits (KdOutputs.stepLogits s.Logits) y)

    /// TWKL alone.
    let twkl (tau: float32) (weight: float32) =
        create "twkl" weight (fun t s _ -> TemporalKd.twkl tau t.Logits (KdOutputs.stepLogits s.Logits))

    /// TWSD alone (ignores the teacher).
    let twsd (target: SelfDistillationTarget) (tau: float32) (weight: float32) =
        create "twsd" weight (fun _ s y -> TemporalKd.twsd target tau (KdOutputs.stepLogits s.Logits) y)

    /// Membrane KD summed over the named probes (same names on both sides).
    let membrane (alignment: Alignment) (names: string list) (weight: float32) =
        create "membrane" weight (fun t s _ -> MembraneKd.mseMaps alignment names t.Membranes s.Membranes)

    /// Membrane KD over (teacher probe, student probe) pairs.
    let membranePairs (alignment: Alignment) (pairs: (string * string) list) (weight: float32) =
        create "membrane" weight (fun t s _ -> MembraneKd.mseProbes alignment pairs t.Membranes s.Membranes)

    /// The combined spike loss on one spike probe present on both sides.
    let spikes (cfg: SpikeKdConfig) (probe: string) (weight: float32) =
        create "spikes" weight (fun t s y ->
            let op = "LossTerm.spikes"
            let ts = KdOutputs.spikes op "teacher" probe t
            let ss = KdOutputs.spikes op "student" probe s
            SpikeKd.proposed cfg ts ss y)

    /// Feature MSE between two taps (teacher tap, student tap), with the adapter in ps if any.
    let feature (ps: Parameters) (teacherTap: string) (studentTap: string) (weight: float32) =
        create "feature" weight (fun t s _ ->
            let op = "LossTerm.feature"
            FeatureKd.mseAdapted ps (KdOutputs.tap op "teacher" teacherTap t) (KdOutputs.tap op "student" studentTap s))

    /// Blurred KD between two taps ([T, B, C, h, w] taps are time-averaged; a teacher tap [T, B, C]
    /// becomes the vector [B, C]). The adapter and restoration parameters ps are held fixed by this
    /// term; the mask key is <c>Rng.fold n rng</c> for the n-th evaluation, so every call draws a
    /// fresh, reproducible mask. To train ps with the student, call <c>BlurredKd.loss</c> from a
    /// function that receives them.
    let blurred
        (cfg: BlurredConfig)
        (ps: Parameters)
        (rng: Rng)
        (teacherTap: string)
        (studentTap: string)
        (weight: float32)
        =
        let calls = ref 0

        create "bkd" weight (fun t s _ ->
            let op = "LossTerm.blurred"
            let mean (x: Tensor) = Tensor.meanDims [| 0 |] false x
            let ft = mean (KdOutputs.tap op "teacher" teacherTap t)
            let fs = mean (KdOutputs.tap op "student" studentTap s)
            let key = Rng.fold calls.Value rng
            calls.Value <- calls.Value + 1
            BlurredKd.loss cfg ps key fs ft)
