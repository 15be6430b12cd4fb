namespace SnnSpec.Training

open System
open System.Collections.Generic
open System.Diagnostics
open System.Threading
open SnnSpec
open SnnSpec.Data
open SnnSpec.Distillation

/// Raised when a loss term or a gradient becomes NaN or infinite; training stops before the
/// update, so the last good parameters are those of the previous step.
type TrainingDivergedException(message: string, step: int, term: string) =
    inherit SnnSpecException(message)
    /// The 1-based optimizer step (per student) that produced the non-finite value.
    member _.Step = step
    /// The loss term (or "gradient of <parameter>") that blew up.
    member _.Term = term

/// How the students of a versatile teacher are scheduled.
[<RequireQualifiedAccess>]
type StudentOrder =
    /// Every batch trains every student in turn; one teacher forward per batch serves them all.
    | Interleaved
    /// Students train one after the other, each for all epochs.
    | Sequential

/// Whether the first stage's teacher outputs come from a cache (see <c>TeacherCache</c>).
[<RequireQualifiedAccess>]
type TeacherCacheMode =
    | Off
    /// Build the cache for the training set before the first epoch.
    | Build of CachePrecision
    /// Use this cache; it must match the teacher and the training data (checked by fingerprint).
    | Use of TeacherCache

/// Reported after every optimizer step.
type TrainProgress =
    {
        /// 0-based stage (a chain has several).
        Stage: int
        /// 0-based student within the stage.
        Student: int
        Epoch: int
        Batch: int
        /// 1-based optimizer step of this student.
        Step: int
        /// Each term's weighted value, in spec order.
        Losses: (string * float32) list
        Total: float32
        LearningRate: float32
        /// Global gradient norm before clipping.
        GradNorm: float
        /// Training accuracy of this batch (time-mean readout).
        Accuracy: float
        Elapsed: TimeSpan
    }

/// Reported after every epoch of every student.
type EpochReport =
    {
        Stage: int
        Student: int
        Epoch: int
        /// Mean total loss over the epoch's batches.
        TrainLoss: float
        TrainAccuracy: float
        /// The validation pass, when a validation batcher is given.
        Validation: EvaluationReport option
        /// Whether this epoch is the best so far (highest validation accuracy at the full T; the
        /// last epoch without validation).
        IsBest: bool
        Elapsed: TimeSpan
    }

/// One student's training state, taken after a completed step: enough for <c>Trainer.fit</c> to
/// continue exactly (see <c>TrainConfig.Resume</c>). Its tensors are copies owned by the snapshot.
type StudentSnapshot =
    {
        Parameters: Parameters
        Buffers: Parameters
        /// The loss terms' trainable parameters, named "loss.&lt;term&gt;.&lt;name&gt;".
        LossParameters: Parameters
        /// The optimizer's state over Parameters followed by LossParameters.
        Optimizer: OptimizerState
        /// Completed optimizer steps of this student.
        Step: int
        /// The next epoch to run (0-based; the configured Epochs once the student has finished).
        NextEpoch: int
        /// The first batch of NextEpoch still to run.
        NextBatch: int
        BestParameters: Parameters
        BestBuffers: Parameters
        BestLossParameters: Parameters
        /// -1 before the first epoch ends.
        BestEpoch: int
        BestAccuracy: float option
        History: EpochReport list
        /// Sums over the completed batches of NextEpoch (for its EpochReport): total loss, correct
        /// predictions, samples and batches.
        LossSum: float
        Correct: int64
        Seen: int64
        Batches: int
    }

/// The students of one stage in a TrainerSnapshot.
type StageSnapshot =
    {
        /// 0-based stage number.
        Index: int
        Students: StudentSnapshot list
    }

/// Where a run stood: every stage begun, finished ones first (their students at NextEpoch =
/// Epochs) and the interrupted one last. Resuming needs the same spec, training batcher and the
/// settings recorded here.
type TrainerSnapshot =
    {
        Stages: StageSnapshot list
        Seed: int
        Epochs: int
        BatchesPerEpoch: int
        StudentOrder: StudentOrder
        /// The run's truncated-BPTT window as it acts: TrainConfig.Truncation, or None when that
        /// window cuts no student's sequence.
        Truncation: int option
        /// The run's MAC counters so far (TrainResult.Cost continues from them).
        TeacherForwardMacs: int64
        StudentTrainingMacs: int64
    }

    /// Optimizer steps completed by every student of every stage so far.
    member s.CompletedSteps =
        s.Stages |> List.sumBy (fun st -> st.Students |> List.sumBy (fun x -> x.Step))

/// The trainer's settings.
type TrainConfig =
    {
        Epochs: int
        Optimizer: OptimizerKind
        LearningRate: float32
        WeightDecay: float32
        DecayRule: WeightDecayRule
        Schedule: LrSchedule
        /// Clip the gradient to this global L2 norm.
        ClipNorm: float32 option
        /// Seeds dropout, blurred masks' fold and every per-step key; same seed, batcher and spec
        /// give bit-identical parameters.
        Seed: int
        StudentOrder: StudentOrder
        TeacherCache: TeacherCacheMode
        Progress: TrainProgress -> unit
        /// Called after each epoch with the report and the student's current model. The model's
        /// tensors are valid during the call (the next step recycles them): save or copy them there.
        OnEpoch: EpochReport -> Model -> unit
        /// Checked before every batch (interleaved students all finish the current one);
        /// cancellation calls OnInterrupt, then raises OperationCanceledException.
        Cancellation: CancellationToken
        /// Called when cancellation is observed, with the state after the last completed step (copies
        /// that stay valid after the trainer exits), before OperationCanceledException propagates:
        /// save it (TrainerCheckpoint.save) to resume later.
        OnInterrupt: TrainerSnapshot -> unit
        /// Continue from a snapshot (of the same spec, batcher, Seed, Epochs and StudentOrder)
        /// instead of starting afresh: the result equals the uninterrupted run bit for bit (a
        /// TeacherCacheMode.Build cache is rebuilt for an unfinished first stage and counted again
        /// in Cost).
        Resume: TrainerSnapshot option
        /// Truncated BPTT with a window of K steps (None: full BPTT). A student at T > K runs each
        /// batch in consecutive chunks of K steps (the last may be shorter): chunk c starts from the
        /// neuron states chunk c − 1 ended in, detached, so no gradient crosses a chunk boundary, and
        /// the activations of one chunk exist at a time. Every loss term sees a chunk as the whole
        /// sequence (the student's per-step outputs of those steps and the teacher's, an ANN
        /// teacher's unchanged); chunk losses and their gradients are summed with weight t_c / T,
        /// and the optimizer steps once per batch. Training-mode BN normalises each chunk by its own
        /// statistics and updates its running statistics once per chunk. Needs per-step input
        /// (no frame stacking) and a teacher at one step (ANN) or at the student's T.
        Truncation: int option
        /// Activation checkpointing in the students' forward passes
        /// (<c>ForwardContext.CheckpointActivations</c>): each segment of layers ending at a spiking
        /// population or residual block keeps only its output and probes for the backward pass and
        /// runs again there. The same losses and gradients (bit for bit but where a parameter read
        /// in several segments sums its contributions in another order, e.g. a quantized MS-ResNet's
        /// shared scale), with fewer activations held per step, for about one more forward pass.
        CheckpointActivations: bool
    }

    /// SGD + Nesterov momentum 0.9, lr 0.1, weight decay 5e-4 skipping BN and biases, cosine to 0.
    static member Default =
        {
            Epochs = 1
            Optimizer = OptimizerKind.Nesterov
            LearningRate = 0.1f
            WeightDecay = 5e-4f
            DecayRule = WeightDecayRule.SkipNormAndBias
            Schedule = LrSchedule.Cosine 0.0f
            ClipNorm = None
            Seed = 0
            StudentOrder = StudentOrder.Interleaved
            TeacherCache = TeacherCacheMode.Off
            Progress = ignore
            OnEpoch = fun _ _ -> ()
            Cancellation = CancellationToken.None
            OnInterrupt = ignore
            Resume = None
            Truncation = None
            CheckpointActivations = false
        }

/// One trained student.
type StudentResult =
    {
        /// The model after the last epoch.
        Final: Model
        /// The best epoch's model (an independent copy).
        Best: Model
        /// The loss terms' trainable parameters after the last epoch, named "loss.&lt;term&gt;.&lt;name&gt;"
        /// (empty when no term has any).
        LossParameters: Parameters
        /// The loss terms' trainable parameters of the best epoch.
        BestLossParameters: Parameters
        /// 0-based epoch of Best.
        BestEpoch: int
        /// Its validation accuracy at the full T, when validated.
        BestAccuracy: float option
        History: EpochReport list
    }

type StageResult =
    {
        Index: int
        /// The frozen teacher of this stage (a chain's later stages: the previous stage's Best).
        Teacher: Model option
        Students: StudentResult list
    }

/// Counted conv/linear MACs of the run (see <c>Flops</c>).
type TrainCost =
    {
        TeacherForwardMacs: int64
        StudentTrainingMacs: int64
    }

    member c.Total = c.TeacherForwardMacs + c.StudentTrainingMacs

type TrainResult =
    {
        Stages: StageResult list
        Cost: TrainCost
        Elapsed: TimeSpan
        /// The cache used by the first stage, for reuse by a later run.
        TeacherCache: TeacherCache option
    }

    /// The last stage's students.
    member r.Students = (List.last r.Stages).Students

/// The distillation trainer: validates the spec, then trains every stage's students with the
/// configured optimizer, schedule and clipping, each step inside a tensor scope so temporaries
/// and superseded parameters go back to the buffer pool. The loss terms' trainable parameters
/// (LossTerm.Parameters) are trained with each student: every student gets its own copy, named
/// "loss.&lt;term&gt;.&lt;name&gt;", differentiated in the same pass and updated by the same optimizer.
module Trainer =
    type private Student =
        {
            Index: int
            Model: Model
            Probes: ProbeRequest
            Decays: string -> bool
            Key: Rng
            /// Storages the trainer never releases (the initial model, terms and resumed state).
            Initial: HashSet<Storage>
            mutable Params: Parameters
            mutable Buffers: Parameters
            mutable LossParams: Parameters
            mutable Opt: OptimizerState
            mutable Step: int
            mutable NextEpoch: int
            mutable NextBatch: int
            mutable Owned: HashSet<Storage>
            mutable BestParams: Parameters
            mutable BestBuffers: Parameters
            mutable BestLossParams: Parameters
            mutable BestEpoch: int
            mutable BestAcc: float option
            History: ResizeArray<EpochReport>
            mutable LossSum: float
            mutable Correct: int64
            mutable Seen: int64
            mutable Batches: int
        }

    /// Moves a storage out of every open scope (it is then owned by the trainer).
    let private escape (t: Tensor) =
        let mutable s = TensorScope.Current

        while not (isNull s) do
            s.KeepStorage t.Storage
            s <- s.Parent

    let private tensorsOf (ps: Parameters) = Parameters.values ps

    let private stateTensors (o: OptimizerState) =
        Array.append
            (o.First |> Option.map tensorsOf |> Option.defaultValue [||])
            (o.Second |> Option.map tensorsOf |> Option.defaultValue [||])

    /// An unpooled copy (survives every scope).
    let private snapshot (ps: Parameters) =
        ps |> Parameters.map (fun _ t -> Tensor(Storage(t.ToArray()), 0, t.Shape, null))

    let private normNames (arch: Architecture) =
        Architecture.layers arch
        |> List.choose (fun (n, l) ->
            match l with
            | Norm _ -> Some n
            | _ -> None)
        |> Set.ofList

    let private stepsOf (m: Model) =
        match m.Mode with
        | ExecutionMode.Snn t -> t
        | ExecutionMode.Ann -> 1

    let private finite (v: float32) = Single.IsFinite v

    /// Global L2 norm of a gradient and the first parameter with a non-finite gradient.
    let private gradCheck (grads: Parameters) =
        let mutable acc = 0.0
        let mutable bad = None

        for n, t in Parameters.toList grads do
            let span = ReadOnlySpan<float32>(t.Data, t.Offset, t.Numel)
            let s = float (System.Numerics.Tensors.TensorPrimitives.SumOfSquares span)

            if bad.IsNone && not (Double.IsFinite s) then
                bad <- Some n

            acc <- acc + s

        sqrt acc, bad

    /// The terms' trainable parameters as one student's copy: term t's "name" becomes
    /// "loss.&lt;t.Name&gt;.name".
    let lossParameters (terms: LossTerm list) =
        terms
        |> List.filter (fun t -> t.Parameters.Count > 0)
        |> List.map (fun t -> Parameters.prefix ("loss." + t.Name) t.Parameters)
        |> Parameters.concat

    let private resumeError (what: string) =
        Errors.fail (
            sprintf
                "Trainer.fit: cannot resume from the snapshot: %s. Fix: resume with the spec, training batcher and TrainConfig (Seed, Epochs, StudentOrder, Truncation) of the interrupted run."
                what
        )

    let private checkSame (what: string) (expected: Parameters) (got: Parameters) =
        let shapes (p: Parameters) =
            Parameters.toList p |> List.map (fun (n, t) -> n, t.Shape)

        let e, g = shapes expected, shapes got

        if e <> g then
            let show l =
                String.Join(", ", l |> List.map (fun (n, s) -> n + " " + Errors.showShape s))

            resumeError (sprintf "%s hold [%s] but the run needs [%s]" what (show g) (show e))

    /// The key of student i of stage s in a run seeded <c>seed</c>. Its forward run at optimizer step
    /// k (1-based; dropout masks) uses Rng.fold k of it, in every chunk of a truncated batch.
    let studentKey (seed: int) (stage: int) (student: int) =
        Rng.fold student (Rng.fold stage (Rng.create seed))

    /// The chunks (start, length) truncated BPTT with window K runs T steps in: [(0, T)] without a
    /// window or when K ≥ T, else ⌈T / K⌉ consecutive chunks of K steps, the last one shorter.
    let truncationChunks (window: int option) (steps: int) : (int * int) list =
        match window with
        | Some k when k >= 1 && k < steps -> [ for s0 in 0..k .. steps - 1 -> s0, min k (steps - s0) ]
        | _ -> [ 0, steps ]

    /// sum + w·g (w·g for the first chunk), computed without a tape; g and the previous sum go
    /// back to the pool, so a batch holds one running sum however many chunks it has.
    let private accumulate (sum: Parameters option) (g: Parameters) (w: float32) =
        let next =
            Diff.noGrad (fun () ->
                let scope = TensorScope.Begin()

                try
                    let r =
                        match sum with
                        | None -> Parameters.map (fun _ t -> t * w) g
                        | Some acc -> Parameters.map2 (fun _ a b -> a + b * w) acc g

                    for t in Parameters.values r do
                        scope.KeepStorage t.Storage

                    r
                finally
                    (scope :> IDisposable).Dispose())

        for t in Parameters.values g do
            TensorScope.ReleaseEarly t.Storage |> ignore

        match sum with
        | Some acc ->
            for t in Parameters.values acc do
                TensorScope.ReleaseEarly t.Storage |> ignore
        | None -> ()

        next

    let private checkTruncation (window: int option) (teacher: Model option) (student: Model) =
        let steps = stepsOf student

        if (truncationChunks window steps).Length > 1 then
            match Architecture.stackedFrames student.Architecture with
            | Some f ->
                Errors.invalidArg
                    "Trainer.fit"
                    "Truncation"
                    window.Value
                    (sprintf
                        "None for %s: it stacks its %d frames into one sample, so its sequence cannot run in chunks"
                        student.Architecture.Name
                        f)
            | None -> ()

            match teacher with
            | Some tm when stepsOf tm <> 1 && stepsOf tm <> steps ->
                Errors.invalidArg
                    "Trainer.fit"
                    "Truncation"
                    window.Value
                    (sprintf
                        "None, or a teacher at T = 1 or at the student's T = %d: this teacher runs %d steps, so its per-step outputs cannot be cut into the student's chunks"
                        steps
                        (stepsOf tm))
            | _ -> ()

    /// Trains per the config and spec on the training batcher, evaluating each epoch on the
    /// validation batcher when given. Validates the spec first (DistillationSpec.validate). With
    /// cfg.Resume it continues a snapshot's run: finished stages are rebuilt from it, the
    /// interrupted epoch skips its completed batches (the batch order and every per-step key are
    /// functions of the seed, epoch and step), and the result equals the uninterrupted run's.
    let fit (cfg: TrainConfig) (spec: DistillationSpec) (train: Batcher) (validation: Batcher option) : TrainResult =
        if cfg.Epochs < 1 then
            Errors.invalidArg "Trainer.fit" "Epochs" cfg.Epochs "at least 1 epoch"

        if not (cfg.WeightDecay >= 0.0f && finite cfg.WeightDecay) then
            Errors.invalidArg "Trainer.fit" "WeightDecay" cfg.WeightDecay "a finite value >= 0"

        if not (cfg.LearningRate > 0.0f && finite cfg.LearningRate) then
            Errors.invalidArg "Trainer.fit" "LearningRate" cfg.LearningRate "a positive finite rate"

        match cfg.Truncation with
        | Some k when k < 1 -> Errors.invalidArg "Trainer.fit" "Truncation" k "a window of at least 1 step, or None"
        | _ -> ()

        DistillationSpec.validate spec

        // Every stage before any trains (a chain's later teachers are earlier stages' students).
        for stage in DistillationSpec.stages spec do
            for student in stage.Students do
                checkTruncation cfg.Truncation stage.Teacher student

        // The window as it acts: None when it cuts no student (then training is full BPTT's).
        let truncation =
            let cuts =
                DistillationSpec.stages spec
                |> List.exists (fun stage ->
                    stage.Students
                    |> List.exists (fun m -> (truncationChunks cfg.Truncation (stepsOf m)).Length > 1))

            if cuts then cfg.Truncation else None

        let clock = Stopwatch.StartNew()
        let perEpoch = train.BatchesPerEpoch

        if perEpoch < 1 then
            Errors.invalidArg "Trainer.fit" "training batcher" "no batches" "a batcher with at least one batch"

        let totalSteps = cfg.Epochs * perEpoch
        let terms = spec.Terms |> List.map (fun t -> t.Term)
        let termsArr = Array.ofList terms
        let initialLoss = lossParameters terms

        // Each term's slice of the student's loss parameters: (offset, count).
        let slices =
            termsArr
            |> Array.scan (fun (off, cnt) (t: LossTerm) -> off + cnt, t.Parameters.Count) (0, 0)
            |> Array.tail

        let tProbes = DistillationSpec.teacherProbes spec
        let sProbes = DistillationSpec.studentProbes spec
        let bs = train.Options.BatchSize
        let stages = DistillationSpec.stages spec
        let mutable teacherMacs = 0L
        let mutable studentMacs = 0L
        let mutable usedCache = None

        match cfg.Resume with
        | None -> ()
        | Some r ->
            if r.Seed <> cfg.Seed then
                resumeError (sprintf "it was taken with Seed %d, the config has %d" r.Seed cfg.Seed)

            if r.Epochs <> cfg.Epochs then
                resumeError (sprintf "it was taken with Epochs %d, the config has %d" r.Epochs cfg.Epochs)

            if r.BatchesPerEpoch <> perEpoch then
                resumeError (
                    sprintf "it was taken with %d batches per epoch, the batcher has %d" r.BatchesPerEpoch perEpoch
                )

            if r.Truncation <> truncation then
                let show = Option.map (sprintf "Some %d") >> Option.defaultValue "None"

                resumeError (
                    sprintf
                        "it was taken with Truncation %s, the config has %s%s"
                        (show r.Truncation)
                        (show truncation)
                        (if r.Truncation.IsNone then
                             " (or the snapshot was written before snapshots recorded the window)"
                         else
                             "")
                )

            if r.StudentOrder <> cfg.StudentOrder then
                resumeError (
                    sprintf "it was taken with StudentOrder %A, the config has %A" r.StudentOrder cfg.StudentOrder
                )

            if r.Stages.IsEmpty || r.Stages.Length > stages.Length then
                resumeError (sprintf "it holds %d stages, the spec has %d" r.Stages.Length stages.Length)

            r.Stages
            |> List.iteri (fun i st ->
                if st.Index <> i then
                    resumeError (sprintf "its stage %d is numbered %d" i st.Index)

                if i < r.Stages.Length - 1 then
                    for s in st.Students do
                        if s.NextEpoch <> cfg.Epochs then
                            resumeError (sprintf "stage %d is not the last one but has not finished" (i + 1)))

            teacherMacs <- r.TeacherForwardMacs
            studentMacs <- r.StudentTrainingMacs

        let evalCfg =
            { EvaluationConfig.Default with
                FiringRates = false
            }

        // Stages run so far (for snapshots): their index and students.
        let begun = ResizeArray<int * Student[]>()

        let studentSnapshot (st: Student) : StudentSnapshot =
            {
                Parameters = snapshot st.Params
                Buffers = snapshot st.Buffers
                LossParameters = snapshot st.LossParams
                Optimizer =
                    { st.Opt with
                        First = st.Opt.First |> Option.map snapshot
                        Second = st.Opt.Second |> Option.map snapshot
                    }
                Step = st.Step
                NextEpoch = st.NextEpoch
                NextBatch = st.NextBatch
                BestParameters = snapshot st.BestParams
                BestBuffers = snapshot st.BestBuffers
                BestLossParameters = snapshot st.BestLossParams
                BestEpoch = st.BestEpoch
                BestAccuracy = st.BestAcc
                History = List.ofSeq st.History
                LossSum = st.LossSum
                Correct = st.Correct
                Seen = st.Seen
                Batches = st.Batches
            }

        let interrupt () =
            cfg.OnInterrupt
                {
                    Stages =
                        [
                            for i, students in begun ->
                                {
                                    StageSnapshot.Index = i
                                    Students = students |> Array.map studentSnapshot |> List.ofArray
                                }
                        ]
                    Seed = cfg.Seed
                    Epochs = cfg.Epochs
                    BatchesPerEpoch = perEpoch
                    StudentOrder = cfg.StudentOrder
                    Truncation = truncation
                    TeacherForwardMacs = teacherMacs
                    StudentTrainingMacs = studentMacs
                }

            cfg.Cancellation.ThrowIfCancellationRequested()

        let runStage (stage: DistillationStage) (teacher: Model option) : StageResult =
            let resumed =
                cfg.Resume
                |> Option.bind (fun r -> List.tryItem stage.Index r.Stages)
                |> Option.map (fun s ->
                    if s.Students.Length <> stage.Students.Length then
                        resumeError (
                            sprintf
                                "stage %d holds %d students, the spec's has %d"
                                (stage.Index + 1)
                                s.Students.Length
                                stage.Students.Length
                        )

                    Array.ofList s.Students)

            let students =
                stage.Students
                |> List.mapi (fun i m ->
                    let initial = HashSet<Storage>(HashIdentity.Reference)

                    let own (ps: Parameters) =
                        for t in tensorsOf ps do
                            initial.Add t.Storage |> ignore

                    own m.Parameters
                    own m.Buffers
                    own initialLoss

                    let st =
                        {
                            Index = i
                            Model = m
                            Probes = sProbes
                            Decays = Optimizer.decays cfg.DecayRule (normNames m.Architecture)
                            Key = studentKey cfg.Seed stage.Index i
                            Initial = initial
                            Params = m.Parameters
                            Buffers = m.Buffers
                            LossParams = initialLoss
                            Opt = OptimizerState.Empty
                            Step = 0
                            NextEpoch = 0
                            NextBatch = 0
                            Owned = HashSet(HashIdentity.Reference)
                            BestParams = m.Parameters
                            BestBuffers = m.Buffers
                            BestLossParams = initialLoss
                            BestEpoch = -1
                            BestAcc = None
                            History = ResizeArray()
                            LossSum = 0.0
                            Correct = 0L
                            Seen = 0L
                            Batches = 0
                        }

                    match resumed with
                    | None -> ()
                    | Some snaps ->
                        let s = snaps[i]
                        let where = sprintf "stage %d student %d's" (stage.Index + 1) (i + 1)
                        checkSame (where + " parameters") m.Parameters s.Parameters
                        checkSame (where + " buffers") m.Buffers s.Buffers
                        checkSame (where + " loss parameters") initialLoss s.LossParameters
                        checkSame (where + " best parameters") m.Parameters s.BestParameters
                        checkSame (where + " best buffers") m.Buffers s.BestBuffers
                        checkSame (where + " best loss parameters") initialLoss s.BestLossParameters

                        let all = Parameters.concat [ m.Parameters; initialLoss ]

                        for o in [ s.Optimizer.First; s.Optimizer.Second ] do
                            match o with
                            | Some o -> checkSame (where + " optimizer moments") all o
                            | None -> ()

                        if
                            s.NextEpoch < 0
                            || s.NextEpoch > cfg.Epochs
                            || s.NextBatch < 0
                            || s.NextBatch > perEpoch
                        then
                            resumeError (
                                sprintf
                                    "%s position (epoch %d, batch %d) is out of range"
                                    where
                                    s.NextEpoch
                                    s.NextBatch
                            )

                        for ps in
                            [
                                s.Parameters
                                s.Buffers
                                s.LossParameters
                                s.BestParameters
                                s.BestBuffers
                                s.BestLossParameters
                            ] do
                            own ps

                        for t in stateTensors s.Optimizer do
                            initial.Add t.Storage |> ignore

                        st.Params <- s.Parameters
                        st.Buffers <- s.Buffers
                        st.LossParams <- s.LossParameters
                        st.Opt <- s.Optimizer
                        st.Step <- s.Step
                        st.NextEpoch <- s.NextEpoch
                        st.NextBatch <- s.NextBatch
                        st.BestParams <- s.BestParameters
                        st.BestBuffers <- s.BestBuffers
                        st.BestLossParams <- s.BestLossParameters
                        st.BestEpoch <- s.BestEpoch
                        st.BestAcc <- s.BestAccuracy
                        st.History.AddRange s.History
                        st.LossSum <- s.LossSum
                        st.Correct <- s.Correct
                        st.Seen <- s.Seen
                        st.Batches <- s.Batches

                    st)
                |> Array.ofList

            begun.Add((stage.Index, students))
            let pending = students |> Array.exists (fun st -> st.NextEpoch < cfg.Epochs)

            let cache =
                match teacher, stage.Index, cfg.TeacherCache with
                | _, _, TeacherCacheMode.Off
                | None, _, _ -> None
                | Some _, i, _ when i > 0 -> None
                | Some _, _, _ when not pending -> None
                | Some tm, _, mode ->
                    if train.Options.Transform.IsSome then
                        Errors.fail
                            "Trainer.fit: the training batcher applies a random transform, so the student would not see the input the cached teacher outputs were computed on. Fix: set TeacherCache = Off, or move augmentation out of the batcher."

                    let c =
                        match mode with
                        | TeacherCacheMode.Use c ->
                            if not (TeacherCache.isValidFor tm tProbes train.Source c) then
                                Errors.fail
                                    "Trainer.fit: the given teacher cache was built from another teacher (parameters, mode or probes) or other data; its fingerprints do not match. Fix: rebuild it (TeacherCacheMode.Build or TeacherCache.getOrBuild)."

                            c
                        | TeacherCacheMode.Build precision ->
                            teacherMacs <-
                                teacherMacs
                                + int64 train.Source.Count * Flops.forwardMacs tm.Architecture tm.Mode

                            TeacherCache.build precision bs tm tProbes train.Source
                        | TeacherCacheMode.Off -> failwith "unreachable"

                    usedCache <- Some c
                    Some c

            let teacherOutputs (order: int[]) (batch: Batch) : KdOutputs =
                match teacher, cache with
                | None, _ ->
                    KdOutputs.ofLogits (
                        Tensor.zeros [| 1; batch.Labels.Length; (students[0]).Model.Architecture.Classes |]
                    )
                | Some _, Some c ->
                    let start = batch.Index * bs
                    TeacherCache.lookup c order[start .. start + batch.Labels.Length - 1]
                | Some tm, None ->
                    teacherMacs <-
                        teacherMacs
                        + int64 batch.Labels.Length * Flops.forwardMacs tm.Architecture tm.Mode

                    Diff.noGrad (fun () ->
                        let out =
                            Model.forward
                                { ForwardContext.Eval with
                                    Probes = tProbes
                                }
                                tm
                                batch.Inputs

                        KdOutputs.ofForward out)

            let trainStep (st: Student) (epoch: int) (tOut: KdOutputs) (batch: Batch) =
                let step = st.Step + 1
                let labels = batch.Labels
                let steps = stepsOf st.Model
                let chunks = truncationChunks cfg.Truncation steps |> Array.ofList
                let truncated = chunks.Length > 1

                let stateNames =
                    if truncated then
                        Architecture.spikingNames st.Model.Architecture |> Array.ofList
                    else
                        [||]

                let teacherSteps = teacher |> Option.map stepsOf |> Option.defaultValue 1
                let sequenceInput = batch.Inputs.Rank = st.Model.Architecture.InputShape.Length + 2
                let nTerms = termsArr.Length
                let nModel = st.Params.Count
                let nBuffers = st.Buffers.Count
                let scope = TensorScope.Begin()

                try
                    // Chunk c (steps start … start + len − 1) from the buffers and neuron states the
                    // previous chunk left; the whole sequence as chunk 0 without truncation.
                    let chunkLoss
                        (c: int)
                        (start: int)
                        (len: int)
                        (buffers: Parameters)
                        (states: Map<string, Tensor>)
                        (ps: Parameters)
                        =
                        let model =
                            { st.Model with
                                Buffers = buffers
                                Mode = (if truncated then ExecutionMode.Snn len else st.Model.Mode)
                            }

                        let ctx =
                            // One forward key for every chunk: dropout draws one mask per sequence.
                            { ForwardContext.Train(Rng.fold step st.Key) with
                                Probes = st.Probes
                                InitialStates = (if truncated then Some states else None)
                                CheckpointActivations = cfg.CheckpointActivations
                            }

                        let termKey =
                            let k = Rng.fold step (Rng.fold (-1) st.Key)
                            if truncated then Rng.fold c k else k

                        let inputs =
                            if truncated && sequenceInput then
                                Tensor.narrow 0 start len batch.Inputs
                            else
                                batch.Inputs

                        let tOut =
                            if truncated && teacherSteps = steps then
                                KdOutputs.map (fun _ _ t -> Tensor.narrow 0 start len t) tOut
                            else
                                tOut

                        let values = Parameters.values ps
                        let modelPs = Parameters.withValues st.Params values[.. nModel - 1]
                        let out = Model.apply ctx model modelPs inputs
                        let sOut = KdOutputs.ofForward out

                        let parts =
                            termsArr
                            |> Array.mapi (fun i term ->
                                let off, cnt = slices[i]

                                let tps =
                                    if cnt = 0 then
                                        term.Parameters
                                    else
                                        Parameters.withValues
                                            term.Parameters
                                            values[nModel + off .. nModel + off + cnt - 1]

                                LossTerm.evaluateWith
                                    {
                                        LossContext.Parameters = tps
                                        Key = Some(Rng.fold i termKey)
                                    }
                                    term
                                    tOut
                                    sOut
                                    labels)

                        Array.reduce (+) parts,
                        Array.concat
                            [
                                parts
                                [| out.Logits |]
                                Parameters.values out.Buffers
                                stateNames |> Array.map (fun n -> out.FinalStates[n])
                            ]

                    let trained = Parameters.concat [ st.Params; st.LossParams ]
                    let mutable buffers = st.Buffers
                    let mutable states = Map.empty
                    let mutable total = 0.0f
                    let partSums = Array.zeroCreate nTerms
                    let chunkLogits = ResizeArray()
                    let mutable grads = trained

                    // Chunk losses and gradients weighted t_c / T (one chunk: weight 1, untouched).
                    for c, (start, len) in Array.indexed chunks do
                        let v, g, aux =
                            Parameters.valueAndGradAux (chunkLoss c start len buffers states) trained

                        let w = float32 len / float32 steps

                        if truncated then
                            total <- total + w * v.ToScalar()

                            for i in 0 .. nTerms - 1 do
                                partSums[i] <- partSums[i] + w * aux[i].ToScalar()

                            grads <- accumulate (if c = 0 then None else Some grads) g w

                            let previous = states

                            states <-
                                stateNames
                                |> Array.mapi (fun i n -> n, Diff.detach aux[nTerms + 1 + nBuffers + i])
                                |> Map.ofArray

                            // The last chunk's states have served this one: back to the pool.
                            let current =
                                HashSet<Storage>(states |> Seq.map (fun kv -> kv.Value.Storage), HashIdentity.Reference)

                            for KeyValue(_, t) in previous do
                                if not (current.Contains t.Storage) then
                                    TensorScope.ReleaseEarly t.Storage |> ignore
                        else
                            total <- v.ToScalar()

                            for i in 0 .. nTerms - 1 do
                                partSums[i] <- aux[i].ToScalar()

                            grads <- g

                        chunkLogits.Add aux[nTerms]
                        buffers <- Parameters.withValues st.Buffers aux[nTerms + 1 .. nTerms + nBuffers]

                    let parts = terms |> List.mapi (fun i t -> t.Name, partSums[i])

                    let where () =
                        sprintf
                            "step %d (stage %d, student %d at T = %d, epoch %d, batch %d)"
                            step
                            (stage.Index + 1)
                            (st.Index + 1)
                            (stepsOf st.Model)
                            (epoch + 1)
                            (batch.Index + 1)

                    let shown (ps: (string * float32) list) =
                        String.Join(", ", ps |> List.map (fun (n, v) -> sprintf "%s = %g" n v))

                    if not (finite total) then
                        let bad, ok = parts |> List.partition (fun (_, v) -> not (finite v))

                        let name, value =
                            match bad with
                            | (n, v) :: _ -> n, v
                            | [] -> "total", total

                        raise (
                            TrainingDivergedException(
                                sprintf
                                    "Trainer: %s: loss term '%s' is %g (weighted)%s. Training stopped before the update; the parameters are those after step %d. Fix: lower the learning rate, clip gradients (ClipNorm), or check the term and the inputs."
                                    (where ())
                                    name
                                    value
                                    (if ok.IsEmpty then "" else "; the other terms: " + shown ok)
                                    (step - 1),
                                step,
                                name
                            )
                        )

                    let norm, badGrad = gradCheck grads

                    match badGrad with
                    | Some p ->
                        raise (
                            TrainingDivergedException(
                                sprintf
                                    "Trainer: %s: the gradient of parameter '%s' is not finite although every loss term is (%s). Training stopped before the update; the parameters are those after step %d. Fix: lower the learning rate, clip gradients (ClipNorm), or check for overflow in the model."
                                    (where ())
                                    p
                                    (shown parts)
                                    (step - 1),
                                step,
                                "gradient of " + p
                            )
                        )
                    | None -> ()

                    let grads =
                        match cfg.ClipNorm with
                        | Some m when norm > float m ->
                            let s = float32 (float m / (norm + 1e-6))
                            Parameters.map (fun _ g -> g * s) grads
                        | _ -> grads

                    let lr = Schedule.rate cfg.Schedule cfg.LearningRate perEpoch totalSteps st.Step

                    let all', opt' =
                        Optimizer.step
                            cfg.Optimizer
                            lr
                            cfg.WeightDecay
                            st.Decays
                            st.Opt
                            (Parameters.concat [ st.Params; st.LossParams ])
                            grads

                    let updated = Parameters.values all'
                    let ps' = Parameters.withValues st.Params updated[.. nModel - 1]
                    let loss' = Parameters.withValues st.LossParams updated[nModel..]

                    let logits =
                        if truncated then
                            Tensor.cat 0 (List.ofSeq chunkLogits)
                        else
                            chunkLogits[0]

                    let buffers' = buffers

                    let correct =
                        Array.map2 (fun p y -> if p = y then 1 else 0) (Readout.predict logits) labels
                        |> Array.sum

                    let kept = Array.concat [ updated; stateTensors opt'; tensorsOf buffers' ]
                    let keptSet = HashSet<Storage>(HashIdentity.Reference)

                    for t in kept do
                        escape t
                        keptSet.Add t.Storage |> ignore

                    for s in st.Owned do
                        if not (keptSet.Contains s) then
                            s.Release()

                    keptSet.ExceptWith st.Initial
                    st.Owned <- keptSet
                    st.Params <- ps'
                    st.LossParams <- loss'
                    st.Opt <- opt'
                    st.Buffers <- buffers'
                    st.Step <- step
                    st.NextBatch <- batch.Index + 1
                    st.LossSum <- st.LossSum + float total
                    st.Correct <- st.Correct + int64 correct
                    st.Seen <- st.Seen + int64 labels.Length
                    st.Batches <- st.Batches + 1

                    studentMacs <-
                        studentMacs
                        + int64 labels.Length * Flops.trainingMacs st.Model.Architecture st.Model.Mode

                    cfg.Progress
                        {
                            Stage = stage.Index
                            Student = st.Index
                            Epoch = epoch
                            Batch = batch.Index
                            Step = step
                            Losses = parts
                            Total = total
                            LearningRate = lr
                            GradNorm = norm
                            Accuracy = float correct / float labels.Length
                            Elapsed = clock.Elapsed
                        }
                finally
                    (scope :> IDisposable).Dispose()

            let endEpoch (st: Student) (epoch: int) =
                let current =
                    { st.Model with
                        Parameters = st.Params
                        Buffers = st.Buffers
                    }

                let validationReport =
                    validation |> Option.map (fun v -> Evaluation.run evalCfg None current v)

                let acc = validationReport |> Option.map (fun r -> r.Accuracy)

                let isBest =
                    match acc, st.BestAcc with
                    | None, _ -> true
                    | Some a, Some b -> a > b
                    | Some _, None -> true

                if isBest then
                    st.BestParams <- snapshot st.Params
                    st.BestBuffers <- snapshot st.Buffers
                    st.BestLossParams <- snapshot st.LossParams
                    st.BestEpoch <- epoch
                    st.BestAcc <- acc

                let report =
                    {
                        Stage = stage.Index
                        Student = st.Index
                        Epoch = epoch
                        TrainLoss =
                            (if st.Batches = 0 then
                                 0.0
                             else
                                 st.LossSum / float st.Batches)
                        TrainAccuracy =
                            (if st.Seen = 0L then
                                 0.0
                             else
                                 float st.Correct / float st.Seen)
                        Validation = validationReport
                        IsBest = isBest
                        Elapsed = clock.Elapsed
                    }

                st.History.Add report
                st.LossSum <- 0.0
                st.Correct <- 0L
                st.Seen <- 0L
                st.Batches <- 0
                st.NextEpoch <- epoch + 1
                st.NextBatch <- 0
                cfg.OnEpoch report current

            /// Runs the batches from index first on of an epoch on the active students, then ends the epoch.
            let runEpoch (active: Student[]) (epoch: int) (first: int) =
                let order = train.SampleOrder epoch

                for batch in train.Epoch epoch do
                    if batch.Index >= first then
                        if cfg.Cancellation.IsCancellationRequested then
                            interrupt ()

                        use _ = TensorScope.Begin()
                        let tOut = teacherOutputs order batch

                        for st in active do
                            trainStep st epoch tOut batch

                for st in active do
                    endEpoch st epoch

            match cfg.StudentOrder with
            | StudentOrder.Interleaved ->
                let e0, b0 = students[0].NextEpoch, students[0].NextBatch

                for st in students do
                    if (st.NextEpoch, st.NextBatch) <> (e0, b0) then
                        resumeError (
                            sprintf
                                "stage %d's interleaved students stand at different positions (student 1 at epoch %d batch %d, student %d at epoch %d batch %d)"
                                (stage.Index + 1)
                                e0
                                b0
                                (st.Index + 1)
                                st.NextEpoch
                                st.NextBatch
                        )

                for e in e0 .. cfg.Epochs - 1 do
                    runEpoch students e (if e = e0 then b0 else 0)
            | StudentOrder.Sequential ->
                for st in students do
                    let e0, b0 = st.NextEpoch, st.NextBatch

                    for e in e0 .. cfg.Epochs - 1 do
                        runEpoch [| st |] e (if e = e0 then b0 else 0)

            {
                Index = stage.Index
                Teacher = teacher
                Students =
                    students
                    |> Array.map (fun st ->
                        {
                            Final =
                                { st.Model with
                                    Parameters = st.Params
                                    Buffers = st.Buffers
                                }
                            Best =
                                { st.Model with
                                    Parameters = st.BestParams
                                    Buffers = st.BestBuffers
                                }
                            LossParameters = st.LossParams
                            BestLossParameters = st.BestLossParams
                            BestEpoch = st.BestEpoch
                            BestAccuracy = st.BestAcc
                            History = List.ofSeq st.History
                        })
                    |> List.ofArray
            }

        let results = ResizeArray<StageResult>()

        for stage in stages do
            let teacher =
                if stage.Index = 0 then
                    stage.Teacher
                else
                    // The previous stage's (single) student, trained and frozen.
                    Some(results[stage.Index - 1].Students.Head.Best)

            results.Add(runStage stage teacher)

        {
            Stages = List.ofSeq results
            Cost =
                {
                    TeacherForwardMacs = teacherMacs
                    StudentTrainingMacs = studentMacs
                }
            Elapsed = clock.Elapsed
            TeacherCache = usedCache
        }

    /// Trains one student with the spec's terms and teacher (a shorthand for a one-student spec).
    let fitOne (cfg: TrainConfig) (spec: DistillationSpec) (train: Batcher) (validation: Batcher option) =
        (fit cfg spec train validation).Students.Head
