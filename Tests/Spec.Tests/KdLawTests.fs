/// Every built-in distillation loss against its applicable laws from the SnnSpec.Laws kit, the
/// same checks a user runs on a new formulation. Which laws apply:
/// - logit KD (KL_τ): all (non-negative, zero at identity, detached, permutation, τ², FD gradient);
/// - soft CE, WSLD: all but zero at identity (the teacher's entropy remains). WSLD's weights are a
///   detached function of the student, so finite differences see a dependence the gradient does
///   not; its gradient is checked with frozen weights in KdLossTests instead;
/// - TWCE: non-negative, permutation, Jensen (CE), FD gradient (no teacher);
/// - TWKL: all, plus T = 1 reduction and Jensen (KL); TWSD: non-negative, permutation, τ², zero
///   for constant-in-time students (paper target), no FD (stop-gradient of the student itself);
/// - membrane, spike and feature losses: non-negative, zero at identity, detached, permutation, FD;
/// - BKD: non-negative, detached, FD, permutation with λ = 0 (masks are drawn per sample).
module SnnSpec.Tests.KdLawTests

open FsCheck
open FsCheck.FSharp
open FsCheck.NUnit
open SnnSpec
open SnnSpec.Distillation
open SnnSpec.Laws

type private P = PropertyAttribute

let private perm (c: KdCase) =
    Rng.permutation c.Dims.Batch (Rng.create (c.Seed + 1))

let private permLabels (c: KdCase) (p: int[] option) =
    match p with
    | None -> c.Labels
    | Some p -> p |> Array.map (fun i -> c.Labels[i])

let private check (results: LawResult list) =
    LawResult.toProperty (LawResult.all results)

/// Continuous student values at least 0.2 above the teacher's everywhere (so neither |d| nor a
/// window's summed difference has a kink within the finite-difference step).
let private separated (seed: int) (teacher: Tensor) =
    let n = Tensor.randn (Rng.create seed) teacher.Shape
    teacher + (0.2f + Tensor.abs n * 0.5f)

// ---------------------------------------------------------------- logit losses

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``logit KD satisfies every logit law`` (c: KdCase) =
    let zt, zs = c.AnnTeacher, Tensor.select 0 0 c.StudentLogits
    let kd = LogitKd.kl 3.0f

    check
        [
            Laws.nonNegative kd zt zs
            Laws.zeroAtIdentity kd zt
            Laws.teacherDetached kd zt zs
            Laws.batchPermutationInvariant 0 (fun _ -> kd) (perm c) zt zs
            Laws.tauScaling LogitKd.kl zt zs
            Laws.gradMatchesFiniteDifferences kd zt zs
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``soft cross-entropy satisfies its laws`` (c: KdCase) =
    let zt, zs = c.AnnTeacher, Tensor.select 0 0 c.StudentLogits
    let f = LogitKd.softCrossEntropy 2.0f

    check
        [
            Laws.nonNegative f zt zs
            Laws.teacherDetached f zt zs
            Laws.batchPermutationInvariant 0 (fun _ -> f) (perm c) zt zs
            Laws.tauScaling LogitKd.softCrossEntropy zt zs
            Laws.gradMatchesFiniteDifferences f zt zs
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``WSLD satisfies its laws`` (c: KdCase) =
    let zt, zs = c.AnnTeacher, Tensor.select 0 0 c.StudentLogits

    let f p =
        LogitKd.wsld 2.0f 1.0f |> fun w t s -> w t s (permLabels c p)

    check
        [
            Laws.nonNegative (f None) zt zs
            Laws.teacherDetached (f None) zt zs
            Laws.batchPermutationInvariant 0 f (perm c) zt zs
            Laws.tauScaling (fun tau t s -> LogitKd.wsld tau 1.0f t s c.Labels) zt zs
        ]

// ---------------------------------------------------------------- temporal-wise KD

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``TWCE satisfies non-negativity, permutation, Jensen and finite differences`` (c: KdCase) =
    let z = c.StudentLogits
    let f p (_: Tensor) s = TemporalKd.twce s (permLabels c p)

    check
        [
            Laws.nonNegative (f None) z z
            Laws.batchPermutationInvariant 1 f (perm c) z z
            Laws.jensenCe TemporalKd.twce z c.Labels
            Laws.gradMatchesFiniteDifferences (f None) z z
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``TWKL satisfies every law with ANN and SNN teachers`` (c: KdCase) =
    let z = c.StudentLogits
    let f = TemporalKd.twkl 3.0f
    let constant = Tensor.stack 0 (List.replicate c.Dims.Steps c.AnnTeacher)

    check
        [
            for zt in [ c.AnnTeacher; c.TeacherLogits ] do
                Laws.nonNegative f zt z
                Laws.teacherDetached f zt z
                Laws.batchPermutationInvariant 1 (fun _ -> f) (perm c) zt z
                Laws.jensenKl TemporalKd.twkl 3.0f zt z
                Laws.tauScaling TemporalKd.twkl zt z
                Laws.gradMatchesFiniteDifferences f zt z
            Laws.zeroAtIdentity (fun t _ -> f t constant) c.AnnTeacher
            Laws.reducesToStandardKd 3.0f f c.AnnTeacher (Tensor.select 0 0 z)
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``TWSD satisfies non-negativity, permutation and tau scaling for both targets`` (c: KdCase) =
    let z = c.StudentLogits
    let constant = Tensor.stack 0 (List.replicate c.Dims.Steps c.AnnTeacher)

    check
        [
            for target in [ EnsembleMean; CorrectnessMasked ] do
                let f p (_: Tensor) s =
                    TemporalKd.twsd target 3.0f s (permLabels c p)

                Laws.nonNegative (f None) z z
                Laws.batchPermutationInvariant 1 f (perm c) z z
                Laws.tauScaling (fun tau _ s -> TemporalKd.twsd target tau s c.Labels) z z
            // The paper target is the student's own mean: 0 when every step is the same.
            Laws.zeroAtIdentity (fun _ s -> TemporalKd.twsd EnsembleMean 3.0f s c.Labels) constant
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 30)>]
let ``the temporal loss satisfies its laws`` (c: KdCase) =
    let z = c.StudentLogits
    let cfg = TemporalKd.defaults

    let f p t s =
        TemporalKd.temporal cfg t s (permLabels c p)
    // Without the self-distillation term every part is differentiable through its inputs.
    let noSd t s =
        TemporalKd.temporal { cfg with Beta = 0.0f } t s c.Labels

    check
        [
            Laws.nonNegative (f None) c.AnnTeacher z
            Laws.teacherDetached (f None) c.AnnTeacher z
            Laws.batchPermutationInvariant 1 f (perm c) c.AnnTeacher z
            Laws.gradMatchesFiniteDifferences noSd c.AnnTeacher z
        ]

// ---------------------------------------------------------------- membrane KD

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 25)>]
let ``membrane KD satisfies its laws for every alignment`` (c: KdCase) =
    let ht, hs = c.TeacherMembrane, c.StudentMembrane
    // A shorter student: its first steps (t_S ≤ T_T).
    let short = Tensor.narrow 0 0 (max 1 (c.Dims.Steps / 2)) hs

    check
        [
            for a in [ Prefix; PooledBins; TimeMean ] do
                let f = MembraneKd.mse a
                Laws.nonNegative f ht short
                Laws.zeroAtIdentity f ht
                Laws.teacherDetached f ht short
                Laws.batchPermutationInvariant 1 (fun _ -> f) (perm c) ht short
                Laws.gradMatchesFiniteDifferences f ht short
        ]

// ---------------------------------------------------------------- spike losses

let private spikeLosses (delta: int) : (string * KdLoss) list =
    [
        "l1", SpikeKd.l1
        "l2", SpikeKd.l2
        "kl", SpikeKd.kl 2.0f
        "slidingL1", SpikeKd.slidingL1 delta
        "slidingL2", SpikeKd.slidingL2 delta
        "windowCounts", SpikeKd.slidingWith WindowCounts 1 delta
    ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 25)>]
let ``spike losses satisfy their laws`` (c: KdCase) =
    let st, ss = c.TeacherSpikes, c.StudentSpikes
    let delta = min 2 c.Dims.Steps
    let cont = separated (c.Seed + 2) st

    check
        [
            for name, f in spikeLosses delta do
                let r =
                    [
                        Laws.nonNegative f st ss
                        Laws.zeroAtIdentity f st
                        Laws.teacherDetached f st ss
                        Laws.batchPermutationInvariant 1 (fun _ -> f) (perm c) st ss
                        Laws.gradMatchesFiniteDifferences f st cont
                    ]

                yield! r |> List.map (fun l -> { l with Law = name + ": " + l.Law })
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 25)>]
let ``the proposed spike loss satisfies its laws`` (c: KdCase) =
    let st, ss = c.TeacherSpikes, c.StudentSpikes

    let cfg =
        { SpikeKd.defaults with
            Delta = min 2 c.Dims.Steps
        }

    let f p t s =
        SpikeKd.proposed cfg t s (permLabels c p)

    let noCe t s =
        SpikeKd.proposed { cfg with Ce = 0.0f } t s c.Labels

    check
        [
            Laws.nonNegative (f None) st ss
            Laws.zeroAtIdentity noCe st
            Laws.teacherDetached (f None) st ss
            Laws.batchPermutationInvariant 1 f (perm c) st ss
            Laws.gradMatchesFiniteDifferences (f None) st (separated (c.Seed + 3) st)
        ]

// ---------------------------------------------------------------- blurred and feature KD

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 15)>]
let ``blurred KD satisfies its laws`` (c: KdCase) =
    let ft = Tensor.select 0 0 c.TeacherMembrane
    let fs = Tensor.select 0 0 c.StudentMembrane
    let ch = c.Dims.Channels
    let ps = BlurredKd.init c.Seed ch ch
    let key = Rng.create c.Seed
    let f (cfg: BlurredConfig) t s = BlurredKd.loss cfg ps key s t

    let blur =
        f
            { BlurredKd.defaults with
                Lambda = 0.5f
            }

    check
        [
            Laws.nonNegative blur ft fs
            Laws.teacherDetached blur ft fs
            Laws.batchPermutationInvariant
                0
                (fun _ ->
                    f
                        { BlurredKd.defaults with
                            Lambda = 0.0f
                        })
                (perm c)
                ft
                fs
            Laws.gradMatchesFiniteDifferencesWith
                { GradCheck.defaults with
                    Epsilon = 1e-3f
                }
                blur
                ft
                fs
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 25)>]
let ``feature MSE and cross-entropy satisfy their laws`` (c: KdCase) =
    let ft = Tensor.select 0 0 c.TeacherMembrane
    let fs = Tensor.select 0 0 c.StudentMembrane

    let ce p (_: Tensor) s =
        FeatureKd.crossEntropy 0.1f s (permLabels c p)

    check
        [
            Laws.nonNegative FeatureKd.mse ft fs
            Laws.zeroAtIdentity FeatureKd.mse ft
            Laws.teacherDetached FeatureKd.mse ft fs
            Laws.batchPermutationInvariant 0 (fun _ -> FeatureKd.mse) (perm c) ft fs
            Laws.gradMatchesFiniteDifferences FeatureKd.mse ft fs
            Laws.nonNegative (ce None) c.StudentLogits c.StudentLogits
            Laws.batchPermutationInvariant 1 ce (perm c) c.StudentLogits c.StudentLogits
            Laws.gradMatchesFiniteDifferences (ce None) c.StudentLogits c.StudentLogits
        ]

// ---------------------------------------------------------------- loss terms on KdOutputs

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 15)>]
let ``built-in loss terms satisfy the term laws`` (c: KdCase) =
    let t, s = KdGen.teacherOutputs c, KdGen.studentOutputs c
    let y = c.Labels
    let p = perm c

    let smooth =
        { SpikeKd.defaults with
            Delta = min 2 c.Dims.Steps
            Ce = 0.0f
        }

    let onlyLogits kind _ = kind = "logits"
    let onlyMembranes kind _ = kind = "membrane"
    let fd = Laws.Term.gradMatchesFiniteDifferencesWith GradCheck.defaults

    let everywhere (term: LossTerm) =
        [
            Laws.Term.nonNegative term t s y
            Laws.Term.teacherDetached term t s y
            Laws.Term.batchPermutationInvariant p term t s y
        ]

    check
        [
            for term in
                [
                    LossTerm.crossEntropy 0.1f 1.0f
                    LossTerm.perStepCrossEntropy 1.0f
                    LossTerm.logitKd 3.0f 1.0f
                    LossTerm.wsld 2.0f 1.0f
                    LossTerm.temporal TemporalKd.defaults
                    LossTerm.twkl 3.0f 1.0f
                    LossTerm.twsd CorrectnessMasked 3.0f 1.0f
                    LossTerm.membrane Prefix [ "mem" ] 1.0f
                    LossTerm.spikes smooth "out" 1.0f
                    LossTerm.feature (Parameters.ofList []) "feature" "feature" 1.0f
                ] do
                yield! everywhere term
            for term in
                [
                    LossTerm.logitKd 3.0f 1.0f
                    LossTerm.membrane Prefix [ "mem" ] 1.0f
                    LossTerm.spikes smooth "out" 1.0f
                    LossTerm.feature (Parameters.ofList []) "feature" "feature" 1.0f
                ] do
                Laws.Term.zeroAtIdentity term t y
            for term in
                [
                    LossTerm.crossEntropy 0.1f 1.0f
                    LossTerm.logitKd 3.0f 1.0f
                    LossTerm.twkl 3.0f 1.0f
                ] do
                fd onlyLogits term t s y
            fd onlyMembranes (LossTerm.membrane PooledBins [ "mem" ] 1.0f) t s y
        ]

[<P(Arbitrary = [| typeof<KdArbitraries> |], MaxTest = 10)>]
let ``the blurred loss term draws a fresh mask per call and keeps the teacher detached`` (c: KdCase) =
    let t, s = KdGen.teacherOutputs c, KdGen.studentOutputs c
    let ch = c.Dims.Channels

    let term =
        LossTerm.blurred BlurredKd.defaults (BlurredKd.init 1 ch ch) (Rng.create c.Seed) "feature" "feature" 1.0f

    check
        [
            Laws.Term.nonNegative term t s c.Labels
            Laws.Term.teacherDetached term t s c.Labels
        ]
