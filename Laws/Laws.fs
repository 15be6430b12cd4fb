namespace SnnSpec.Laws

open System
open FsCheck
open FsCheck.FSharp
open SnnSpec
open SnnSpec.Distillation

/// The outcome of one law check: its name, whether it held and a message with the numbers.
type LawResult =
    {
        Law: string
        Passed: bool
        Message: string
    }

    override r.ToString() =
        sprintf "%s %s: %s" (if r.Passed then "PASS" else "FAIL") r.Law r.Message

/// A distillation loss of (teacher, student) tensors; labels and settings are captured.
type KdLoss = Tensor -> Tensor -> Tensor

module LawResult =
    let make (law: string) (passed: bool) (message: string) =
        {
            Law = law
            Passed = passed
            Message = message
        }

    /// Every result passed; the message lists the failures (or all laws when all passed).
    let all (results: LawResult list) =
        let failed = results |> List.filter (fun r -> not r.Passed)

        match failed with
        | [] -> make "all" true (results |> List.map (fun r -> r.Law) |> String.concat ", ")
        | _ -> make "all" false (failed |> List.map string |> String.concat "; ")

    /// An FsCheck property that holds when the law held, labelled with its message.
    let toProperty (r: LawResult) = r.Passed |> Prop.label (string r)

    /// Raises an exception with the law's message when it failed (for example-based tests).
    let assertPassed (r: LawResult) =
        if not r.Passed then
            failwith (string r)

/// Reusable law checks for distillation losses. Each returns a LawResult; the checks are
/// numerical with float32 tolerances (absolute 1e-5 plus relative 1e-4 unless stated).
module Laws =
    let private scalar (t: Tensor) = float (t.ToScalar())
    let private tolOf (v: float) = 1e-5 + 1e-4 * abs v

    let private norm (t: Tensor) =
        t.ToArray() |> Array.sumBy (fun v -> float v * float v) |> sqrt

    let private maxAbs (t: Tensor) =
        t.ToArray() |> Array.fold (fun m v -> max m (abs (float v))) 0.0

    /// L(teacher, student) ≥ 0.
    let nonNegative (loss: KdLoss) (teacher: Tensor) (student: Tensor) =
        let v = scalar (Diff.noGrad (fun () -> loss teacher student))
        LawResult.make "non-negative" (v >= -tolOf v && not (Double.IsNaN v)) (sprintf "loss = %g" v)

    /// L(x, x) = 0 within tol (absolute).
    let zeroAtIdentityWith (tol: float) (loss: KdLoss) (x: Tensor) =
        let v = scalar (Diff.noGrad (fun () -> loss x x))
        LawResult.make "zero at identity" (abs v <= tol) (sprintf "L(x, x) = %g (tolerance %g)" v tol)

    /// L(x, x) = 0 within 1e-5.
    let zeroAtIdentity (loss: KdLoss) (x: Tensor) = zeroAtIdentityWith 1e-5 loss x

    /// The gradient with respect to the teacher input is exactly zero (the teacher is detached)
    /// and the gradient with respect to the student is finite.
    let teacherDetached (loss: KdLoss) (teacher: Tensor) (student: Tensor) =
        let _, g = Diff.valueAndGradN (fun xs -> loss xs[0] xs[1]) [| teacher; student |]
        let gt = maxAbs g[0]
        let finite = Tensor.isFinite g[1]

        LawResult.make
            "teacher detached"
            (gt = 0.0 && finite)
            (sprintf "max |dL/dteacher| = %g, student gradient finite = %b" gt finite)

    /// The analytic gradient with respect to the student matches central finite differences
    /// (SnnSpec's GradCheck, in float64 accumulation; the teacher held fixed).
    let gradMatchesFiniteDifferencesWith (opts: GradCheck.Options) (loss: KdLoss) (teacher: Tensor) (student: Tensor) =
        let r = GradCheck.checkWith opts (fun xs -> loss teacher xs[0]) [| student |]

        LawResult.make
            "gradient matches finite differences"
            r.Passed
            (sprintf "max abs error %g, max rel error %g; worst %s" r.MaxAbsError r.MaxRelError r.Worst)

    /// <c>gradMatchesFiniteDifferencesWith GradCheck.defaults</c>.
    let gradMatchesFiniteDifferences loss teacher student =
        gradMatchesFiniteDifferencesWith GradCheck.defaults loss teacher student

    /// Permuting the batch (the same permutation on teacher and student, along batchAxis, and on
    /// whatever the loss captured through <c>lossOf perm</c>, e.g. labels) leaves the loss unchanged.
    let batchPermutationInvariant
        (batchAxis: int)
        (lossOf: int[] option -> KdLoss)
        (perm: int[])
        (teacher: Tensor)
        (student: Tensor)
        =
        let p (t: Tensor) =
            Tensor.indexSelect (if t.Rank = 2 then 0 else batchAxis) perm t

        let v0 = scalar (Diff.noGrad (fun () -> lossOf None teacher student))
        let v1 = scalar (Diff.noGrad (fun () -> lossOf (Some perm) (p teacher) (p student)))

        LawResult.make
            "batch-permutation invariant"
            (abs (v0 - v1) <= tolOf v0)
            (sprintf "loss %g, permuted %g (permutation %A)" v0 v1 perm)

    /// At T = 1 the per-step loss of the student [1, B, K] equals Hinton's KD KL_τ(z_T ‖ z_1)
    /// (class-sum, batch-mean, × τ²). teacher [B, K], student [B, K].
    let reducesToStandardKd (tau: float32) (perStep: KdLoss) (teacher: Tensor) (student: Tensor) =
        Diff.noGrad (fun () ->
            let v = scalar (perStep teacher (Tensor.unsqueeze 0 student))
            let kd = scalar (LogitKd.kl tau teacher student)

            LawResult.make
                "reduces to standard KD at T = 1"
                (abs (v - kd) <= tolOf kd)
                (sprintf "loss at T = 1 = %g, KL_tau = %g (tau = %g)" v kd tau))

    /// Jensen bound: ofMean(z̄) ≤ perStep(z) where z̄ = (1/T) Σ_t z_t, for a per-step loss that
    /// averages a function convex in the logits. student [T, B, K].
    let jensen (law: string) (ofMean: Tensor -> Tensor) (perStep: Tensor -> Tensor) (student: Tensor) =
        Diff.noGrad (fun () ->
            let m = scalar (ofMean (Tensor.meanDims [| 0 |] false student))
            let a = scalar (perStep student)
            LawResult.make law (m <= a + tolOf a) (sprintf "loss of the time-mean %g <= per-step average %g" m a))

    /// CE(z̄, y) ≤ perStepCe(z, y) (Lemma 1 of Yu et al.).
    let jensenCe (perStepCe: Tensor -> int[] -> Tensor) (student: Tensor) (labels: int[]) =
        jensen "Jensen bound (CE)" (fun z -> Tensor.crossEntropyIdx z labels) (fun z -> perStepCe z labels) student

    /// KL_τ(z_A ‖ z̄) ≤ perStepKl τ z_A z (Prop. 2 of Yu et al.). teacher [B, K] or per step.
    let jensenKl (perStepKl: float32 -> KdLoss) (tau: float32) (teacher: Tensor) (student: Tensor) =
        let zA =
            if teacher.Rank = 3 then
                Tensor.meanDims [| 0 |] false teacher
            else
                teacher

        jensen "Jensen bound (KL)" (fun z -> LogitKd.kl tau zA z) (fun z -> perStepKl tau teacher z) student

    /// With the τ² factor the student gradient stays O(1) in τ. For consecutive temperatures of the
    /// list the larger of the two gradient norms is at most maxRatio times the smaller, and every
    /// gradient is finite (all below 1e-5 passes: the loss is at its minimum for every τ). Choose
    /// temperatures in the soft regime (τ above the logits' spread): there τ²·KL tends to Hinton's
    /// logit-matching limit, so its gradient is nearly constant, whereas a loss missing τ² scales
    /// as 1/τ² (a factor 9 between τ and 3τ) and one with an extra τ as τ (a factor 3). At τ near 1
    /// a saturated softmax can make the gradient arbitrarily small, so no bound holds there.
    let tauScalingWith
        (taus: float32 list)
        (maxRatio: float)
        (lossOf: float32 -> KdLoss)
        (teacher: Tensor)
        (student: Tensor)
        =
        let norms =
            taus
            |> List.map (fun tau ->
                let _, g = Diff.valueAndGrad (fun s -> lossOf tau teacher s) student
                tau, norm g)

        let ns = norms |> List.map snd
        let finite = ns |> List.forall Double.IsFinite
        let vanishing = List.max ns <= 1e-5

        let worst =
            ns
            |> List.pairwise
            |> List.map (fun (a, b) -> if min a b > 0.0 then max a b / min a b else infinity)
            |> List.fold max 1.0

        LawResult.make
            "tau-squared scaling keeps gradients O(1)"
            (finite && (vanishing || worst <= maxRatio))
            (sprintf "gradient norms %A (worst consecutive ratio %g, allowed %g)" norms worst maxRatio)

    /// <c>tauScalingWith [3; 10; 30] 2.5</c>: a missing τ² gives ratios near 9 to 11, an extra τ about 3.
    let tauScaling lossOf teacher student =
        tauScalingWith [ 3.0f; 10.0f; 30.0f ] 2.5 lossOf teacher student

    /// The same laws for LossTerm values on KdOutputs (the term's Loss called directly, so its own
    /// detachment is checked, not LossTerm.evaluate's).
    module Term =
        let private value (term: LossTerm) teacher student labels =
            scalar (Diff.noGrad (fun () -> term.Loss teacher student labels))

        /// term ≥ 0.
        let nonNegative (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
            let v = value term teacher student labels

            LawResult.make
                (sprintf "%s: non-negative" term.Name)
                (v >= -tolOf v && not (Double.IsNaN v))
                (sprintf "loss = %g" v)

        /// term(o, o) = 0 within tol.
        let zeroAtIdentityWith (tol: float) (term: LossTerm) (outputs: KdOutputs) (labels: int[]) =
            let v = value term outputs outputs labels

            LawResult.make
                (sprintf "%s: zero at identity" term.Name)
                (abs v <= tol)
                (sprintf "L(o, o) = %g (tolerance %g)" v tol)

        let zeroAtIdentity term outputs labels =
            zeroAtIdentityWith 1e-5 term outputs labels

        /// The gradient with respect to every teacher tensor is zero; the student's is finite.
        let teacherDetached (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
            let tt = KdOutputs.tensors teacher
            let st = KdOutputs.tensors student

            let _, g =
                Diff.valueAndGradN
                    (fun xs ->
                        term.Loss
                            (KdOutputs.withTensors teacher xs[.. tt.Length - 1])
                            (KdOutputs.withTensors student xs[tt.Length ..])
                            labels)
                    (Array.append tt st)

            let gt = g[.. tt.Length - 1] |> Array.fold (fun m t -> max m (maxAbs t)) 0.0
            let finite = g[tt.Length ..] |> Array.forall Tensor.isFinite

            LawResult.make
                (sprintf "%s: teacher detached" term.Name)
                (gt = 0.0 && finite)
                (sprintf "max |dL/dteacher| = %g, student gradients finite = %b" gt finite)

        /// The analytic gradient with respect to the chosen student tensors (by kind and name, as
        /// in KdOutputs.map; all when the filter says true) matches finite differences.
        let gradMatchesFiniteDifferencesWith
            (opts: GradCheck.Options)
            (selects: string -> string -> bool)
            (term: LossTerm)
            (teacher: KdOutputs)
            (student: KdOutputs)
            (labels: int[])
            =
            let named =
                [|
                    yield "logits", "logits", student.Logits
                    for KeyValue(n, t) in student.Membranes -> "membrane", n, t
                    for KeyValue(n, t) in student.Spikes -> "spikes", n, t
                    for KeyValue(n, t) in student.Taps -> "tap", n, t
                |]

            let chosen =
                named
                |> Array.indexed
                |> Array.filter (fun (_, (k, n, _)) -> selects k n)
                |> Array.map fst

            let all = named |> Array.map (fun (_, _, t) -> t)

            let f (xs: Tensor[]) =
                let ts = Array.copy all
                Array.iteri (fun j i -> ts[i] <- xs[j]) chosen
                term.Loss teacher (KdOutputs.withTensors student ts) labels

            let r = GradCheck.checkWith opts f (chosen |> Array.map (fun i -> all[i]))

            LawResult.make
                (sprintf "%s: gradient matches finite differences" term.Name)
                r.Passed
                (sprintf "max abs error %g, max rel error %g; worst %s" r.MaxAbsError r.MaxRelError r.Worst)

        let gradMatchesFiniteDifferences term teacher student labels =
            gradMatchesFiniteDifferencesWith GradCheck.defaults (fun _ _ -> true) term teacher student labels

        /// The analytic gradient with respect to the term's trainable parameters (LossTerm.Parameters,
        /// which Trainer.fit trains with the student) matches finite differences; the term's random
        /// draws use the fixed key. Passes trivially for a term without parameters.
        let parameterGradMatchesFiniteDifferencesWith
            (opts: GradCheck.Options)
            (key: Rng)
            (term: LossTerm)
            (teacher: KdOutputs)
            (student: KdOutputs)
            (labels: int[])
            =
            let law = sprintf "%s: parameter gradient matches finite differences" term.Name

            if term.Parameters.Count = 0 then
                LawResult.make law true "the term has no trainable parameters"
            else
                let f (xs: Tensor[]) =
                    term.LossWith
                        {
                            LossContext.Parameters = Parameters.withValues term.Parameters xs
                            Key = Some key
                        }
                        teacher
                        student
                        labels

                let r = GradCheck.checkWith opts f (Parameters.values term.Parameters)

                LawResult.make
                    law
                    r.Passed
                    (sprintf "max abs error %g, max rel error %g; worst %s" r.MaxAbsError r.MaxRelError r.Worst)

        let parameterGradMatchesFiniteDifferences key term teacher student labels =
            parameterGradMatchesFiniteDifferencesWith GradCheck.defaults key term teacher student labels

        /// Permutes every tensor's batch axis: logits [B, K] on axis 0, everything else on axis 1
        /// (the [T, B, …] convention of ForwardOutput).
        let permuteBatch (perm: int[]) (o: KdOutputs) =
            o
            |> KdOutputs.map (fun kind _ t ->
                let axis = if kind = "logits" && t.Rank = 2 then 0 else 1
                Tensor.indexSelect axis perm t)

        /// Permuting the samples (outputs of both sides and the labels) leaves the term unchanged.
        let batchPermutationInvariant
            (perm: int[])
            (term: LossTerm)
            (teacher: KdOutputs)
            (student: KdOutputs)
            (labels: int[])
            =
            let v0 = value term teacher student labels

            let v1 =
                value
                    term
                    (permuteBatch perm teacher)
                    (permuteBatch perm student)
                    (perm |> Array.map (fun i -> labels[i]))

            LawResult.make
                (sprintf "%s: batch-permutation invariant" term.Name)
                (abs (v0 - v1) <= tolOf v0)
                (sprintf "loss %g, permuted %g (permutation %A)" v0 v1 perm)

        /// All the term laws that hold for every loss (non-negativity, teacher detachment, batch
        /// permutation, finite-difference gradients); add zeroAtIdentity where it applies.
        let standard (perm: int[]) (term: LossTerm) (teacher: KdOutputs) (student: KdOutputs) (labels: int[]) =
            LawResult.all
                [
                    nonNegative term teacher student labels
                    teacherDetached term teacher student labels
                    batchPermutationInvariant perm term teacher student labels
                    gradMatchesFiniteDifferences term teacher student labels
                ]
