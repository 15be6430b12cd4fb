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

/// What a term's loss receives besides the two sides' outputs: its trainable parameters (the
/// term's own when evaluated alone; the student's current copy inside <c>Trainer.fit</c>) and a key
/// for this evaluation's random draws (Some: the trainer's key for this student, step and term, so a
/// resumed run draws the same; None outside the trainer, where a term draws its own).
type LossContext =
    {
        Parameters: Parameters
        Key: Rng option
    }

/// One weighted term of a distillation objective. <c>LossWith context teacher student labels</c>
/// returns a scalar; any F# function of that type plugs in and is differentiated automatically,
/// with respect to the student and to the term's <c>Parameters</c> (adapters, restoration blocks:
/// empty for most terms), which <c>Trainer.fit</c> trains with each student. Terms are evaluated
/// with the teacher's outputs detached (<c>LossTerm.evaluate</c>).
type LossTerm =
    {
        Name: string
        Weight: float32
        /// Trainable parameters of the term (names local to the term, e.g. "adapter.weight"); the
        /// trainer gives every student its own copy, named "loss.&lt;term&gt;.&lt;name&gt;".
        Parameters: Parameters
        LossWith: LossContext -> KdOutputs -> KdOutputs -> int[] -> Tensor
    }

    /// The loss with the term's own parameters and no trainer key: teacher → student → labels → scalar.
    member t.Loss: KdOutputs -> KdOutputs -> int[] -> Tensor =
        fun teacher student labels ->
            t.LossWith
                {
                    LossContext.Parameters = t.Parameters
                    Key = None
                }
                teacher
                student
                labels

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
    let private checkWeight (op: string) (name: string) (weight: float32) =
        if not (weight >= 0.0f && Single.IsFinite weight) then
            Errors.invalidArg
                op
                (sprintf "weight of term '%s'" name)
                weight
                "a finite weight >= 0 (drop the term instead of a negative weight)"

    /// A term whose loss reads its context: the trainable parameters ps (trained with the student
    /// by Trainer.fit) and the trainer's key for random draws. The weight must be finite and ≥ 0.
    let createWithContext
        (name: string)
        (weight: float32)
        (ps: Parameters)
        (loss: LossContext -> KdOutputs -> KdOutputs -> int[] -> Tensor)
        =
        checkWeight "LossTerm.createWithContext" name weight

        {
            Name = name
            Weight = weight
            Parameters = ps
            LossWith = loss
        }

    /// A term with trainable parameters ps: <c>loss ps teacher student labels</c> → scalar. Trainer.fit
    /// differentiates the total loss with respect to the student and ps together and updates both
    /// with the same optimizer; evaluated alone, the term uses ps as given.
    let createWithParameters
        (name: string)
        (weight: float32)
        (ps: Parameters)
        (loss: Parameters -> KdOutputs -> KdOutputs -> int[] -> Tensor)
        =
        checkWeight "LossTerm.createWithParameters" name weight
        createWithContext name weight ps (fun ctx t s y -> loss ctx.Parameters t s y)

    /// A term from any function (teacher outputs, student outputs, labels) → scalar. The weight
    /// must be finite and ≥ 0 (an error otherwise, naming the term).
    let create (name: string) (weight: float32) (loss: KdOutputs -> KdOutputs -> int[] -> Tensor) =
        checkWeight "LossTerm.create" name weight
        createWithContext name weight (Parameters.ofList []) (fun _ t s y -> loss t s y)

    /// <c>create</c> under the name users expect for their own functions.
    let custom name weight loss = create name weight loss

    /// weight · loss(context, detach teacher, student, labels).
    let evaluateWith (ctx: LossContext) (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
        let v = term.LossWith ctx (KdOutputs.detach teacher) student labels

        if v.Numel <> 1 then
            Errors.invalidArg
                "LossTerm.evaluate"
                (sprintf "result of term '%s'" term.Name)
                (Errors.showShape v.ShapeRef)
                "a scalar (one element); reduce the loss with Tensor.mean or Tensor.sum"

        v * term.Weight

    /// weight · loss(detach teacher, student, labels) with the term's own parameters.
    let evaluate (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
        evaluateWith
            {
                LossContext.Parameters = term.Parameters
                Key = None
            }
            term
            teacher
            student
            labels

    /// Σ_terms weight · loss, and each term's weighted value (for logging).
    let totalWithParts (terms: LossTerm list) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
        if List.isEmpty terms then
            Errors.invalidArg "LossTerm.total" "terms" "[]" "at least one loss term"

        let parts = terms |> List.map (fun t -> t.Name, evaluate t teacher student labels)
        parts |> List.map snd |> List.reduce (+), parts

    /// Σ_terms weight · loss.
    let total terms teacher student labels =
        fst (totalWithParts terms teacher student labels)

    /// The student's cross-entropy (label smoothing ε) on its outputs read out over time by
    /// <c>readout</c> (FeatureKd.crossEntropyWith); ignores the teacher.
    let crossEntropyWith (readout: TimeReadout) (labelSmoothing: float32) (weight: float32) =
        create "ce" weight (fun _ s y -> FeatureKd.crossEntropyWith readout labelSmoothing s.Logits y)

    /// The student's cross-entropy (label smoothing ε) on its time-mean logits; ignores the teacher.
    let crossEntropy (labelSmoothing: float32) (weight: float32) =
        crossEntropyWith TimeReadout.Mean labelSmoothing weight

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

    /// Feature MSE between the time means of two taps: taps [T, B, C, …] become [B, C, …] (an ANN
    /// teacher's [1, B, C, …] included, so teacher and student may run different T), then the 1×1
    /// adapter in ps, if any (FeatureKd.initAdapter), maps the student's channels to the teacher's.
    /// The adapter is the term's trainable parameters.
    let feature (ps: Parameters) (teacherTap: string) (studentTap: string) (weight: float32) =
        createWithParameters "feature" weight ps (fun ps t s _ ->
            let op = "LossTerm.feature"
            let mean (x: Tensor) = Tensor.meanDims [| 0 |] false x

            FeatureKd.mseAdapted
                ps
                (mean (KdOutputs.tap op "teacher" teacherTap t))
                (mean (KdOutputs.tap op "student" studentTap s)))

    /// Blurred KD between two taps ([T, B, C, h, w] taps are time-averaged; a teacher tap [T, B, C]
    /// becomes the vector [B, C]). The adapter and restoration block ps (BlurredKd.init) are the
    /// term's trainable parameters, trained with the student by Trainer.fit (BKDSNN, methods.md §4a).
    /// Mask keys: inside the trainer, the trainer's per-step key folded with rng, so a run (and a
    /// resumed run) is reproducible; evaluated alone, <c>Rng.fold n rng</c> for the n-th call, so
    /// every call draws a fresh, reproducible mask.
    let blurred
        (cfg: BlurredConfig)
        (ps: Parameters)
        (rng: Rng)
        (teacherTap: string)
        (studentTap: string)
        (weight: float32)
        =
        let calls = ref 0

        createWithContext "bkd" weight ps (fun ctx t s _ ->
            let op = "LossTerm.blurred"
            let mean (x: Tensor) = Tensor.meanDims [| 0 |] false x
            let ft = mean (KdOutputs.tap op "teacher" teacherTap t)
            let fs = mean (KdOutputs.tap op "student" studentTap s)

            let key =
                match ctx.Key with
                | Some k -> Rng.fold (int (rng.Key >>> 33)) k
                | None ->
                    let n = calls.Value
                    calls.Value <- n + 1
                    Rng.fold n rng

            BlurredKd.loss cfg ctx.Parameters key fs ft)
