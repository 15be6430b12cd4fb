namespace SnnSpec.Laws

open FsCheck
open FsCheck.FSharp
open SnnSpec
open SnnSpec.Distillation

/// The sizes shared by every tensor of one generated case.
type KdDims =
    {
        /// Student steps T (and the SNN teacher's).
        Steps: int
        /// Batch size B.
        Batch: int
        /// Classes K (= output neurons of the spike tensors).
        Classes: int
        /// Channels C of the membrane traces [T, B, C, H, W].
        Channels: int
        /// Spatial size H = W of the membrane traces.
        Size: int
    }

/// One consistent distillation case: teacher and student tensors of matching shapes and labels.
/// Every tensor is derived from Seed, so a case is reproducible from its printed form.
type KdCase =
    {
        Dims: KdDims
        Seed: int
        /// SNN teacher logits per step [T, B, K].
        TeacherLogits: Tensor
        /// Student logits per step [T, B, K].
        StudentLogits: Tensor
        /// ANN teacher logits [B, K].
        AnnTeacher: Tensor
        /// Labels [B] in [0, K).
        Labels: int[]
        /// Binary teacher output spikes [T, B, K].
        TeacherSpikes: Tensor
        /// Binary student output spikes [T, B, K].
        StudentSpikes: Tensor
        /// Teacher membrane trace [T, B, C, H, W].
        TeacherMembrane: Tensor
        /// Student membrane trace [T, B, C, H, W].
        StudentMembrane: Tensor
    }

    override c.ToString() =
        sprintf
            "KdCase(T=%d, B=%d, K=%d, C=%d, HW=%d, seed=%d)"
            c.Dims.Steps
            c.Dims.Batch
            c.Dims.Classes
            c.Dims.Channels
            c.Dims.Size
            c.Seed

/// Generators for property tests of distillation losses.
module KdGen =
    /// Sizes with 1 ≤ T ≤ maxSteps, 1 ≤ B ≤ maxBatch, 2 ≤ K ≤ maxClasses, small C and H = W.
    let dimsWith (maxSteps: int) (maxBatch: int) (maxClasses: int) =
        gen {
            let! t = Gen.choose (1, maxSteps)
            let! b = Gen.choose (1, maxBatch)
            let! k = Gen.choose (2, maxClasses)
            let! c = Gen.choose (1, 3)
            let! s = Gen.choose (1, 3)

            return
                {
                    Steps = t
                    Batch = b
                    Classes = k
                    Channels = c
                    Size = s
                }
        }

    /// T ≤ 4, B ≤ 5, K ≤ 6.
    let dims = dimsWith 4 5 6

    /// Logits of the given shape: normal draws times scale from key rng.
    let logits (rng: Rng) (scale: float32) (shape: int[]) = Tensor.randn rng shape * scale

    /// Binary spikes with firing probability p.
    let spikes (rng: Rng) (p: float32) (shape: int[]) = Tensor.bernoulli rng p shape

    /// Labels in [0, classes).
    let labels (rng: Rng) (batch: int) (classes: int) =
        Array.init batch (fun i -> Rng.intBelow rng (int64 i) classes)

    /// A membrane trace: a smooth drift plus noise, [T, B, C, H, W].
    let membrane (rng: Rng) (d: KdDims) =
        let shape = [| d.Steps; d.Batch; d.Channels; d.Size; d.Size |]
        Tensor.randn rng shape * 0.5f + 0.3f

    /// The case of given sizes and seed.
    let caseOf (d: KdDims) (seed: int) =
        let r = Rng.splitN 9 (Rng.create seed)
        let tbk = [| d.Steps; d.Batch; d.Classes |]

        {
            Dims = d
            Seed = seed
            TeacherLogits = logits r[0] 2.0f tbk
            StudentLogits = logits r[1] 2.0f tbk
            AnnTeacher = logits r[2] 2.0f [| d.Batch; d.Classes |]
            Labels = labels r[3] d.Batch d.Classes
            TeacherSpikes = spikes r[4] 0.4f tbk
            StudentSpikes = spikes r[5] 0.4f tbk
            TeacherMembrane = membrane r[6] d
            StudentMembrane = membrane r[7] d
        }

    /// A case with sizes from <c>dimsWith</c>.
    let caseWith (maxSteps: int) (maxBatch: int) (maxClasses: int) =
        gen {
            let! d = dimsWith maxSteps maxBatch maxClasses
            let! seed = Gen.choose (0, 1_000_000)
            return caseOf d seed
        }

    /// A case with the default sizes.
    let case = caseWith 4 5 6

    /// A permutation of 0 … n − 1.
    let permutation (n: int) =
        gen {
            let! seed = Gen.choose (0, 1_000_000)
            return Rng.permutation n (Rng.create seed)
        }

    /// The teacher side of a case as KdOutputs: SNN logits, membrane probe "mem", spike probe
    /// "out", tap "feature" (the membrane trace, [T, B, C, H, W]).
    let teacherOutputs (c: KdCase) =
        {
            Logits = c.TeacherLogits
            Membranes = Map [ "mem", c.TeacherMembrane ]
            Spikes = Map [ "out", c.TeacherSpikes ]
            Taps = Map [ "feature", c.TeacherMembrane ]
        }

    /// The student side of a case as KdOutputs (same probe names as <c>teacherOutputs</c>).
    let studentOutputs (c: KdCase) =
        {
            Logits = c.StudentLogits
            Membranes = Map [ "mem", c.StudentMembrane ]
            Spikes = Map [ "out", c.StudentSpikes ]
            Taps = Map [ "feature", c.StudentMembrane ]
        }

/// Arbitrary instances: register with <c>[&lt;Property(Arbitrary = [| typeof&lt;KdArbitraries&gt; |])&gt;]</c>.
type KdArbitraries =
    static member KdCase() = Arb.fromGen KdGen.case
