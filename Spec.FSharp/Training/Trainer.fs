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
        /// Checked between steps; cancellation raises OperationCanceledException.
        Cancellation: CancellationToken
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
        }

/// One trained student.
type StudentResult =
    {
        /// The model after the last epoch.
        Final: Model
        /// The best epoch's model (an independent copy).
        Best: Model
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
/// and superseded parameters go back to the buffer pool.
module Trainer =
    type private Student =
        {
            Index: int
            Model: Model
            Probes: ProbeRequest
            Decays: string -> bool
            Key: Rng
            mutable Params: Parameters
            mutable Buffers: Parameters
            mutable Opt: OptimizerState
            mutable Step: int
            mutable Owned: HashSet<Storage>
            mutable BestParams: Parameters
            mutable BestBuffers: Parameters
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

    /// Trains per the config and spec on the training batcher, evaluating each epoch on the
    /// validation batcher when given. Validates the spec first (DistillationSpec.validate).
    let fit (cfg: TrainConfig) (spec: DistillationSpec) (train: Batcher) (validation: Batcher option) : TrainResult =
        if cfg.Epochs < 1 then
            Errors.invalidArg "Trainer.fit" "Epochs" cfg.Epochs "at least 1 epoch"

        if not (cfg.WeightDecay >= 0.0f && finite cfg.WeightDecay) then
            Errors.invalidArg "Trainer.fit" "WeightDecay" cfg.WeightDecay "a finite value >= 0"

        if not (cfg.LearningRate > 0.0f && finite cfg.LearningRate) then
            Errors.invalidArg "Trainer.fit" "LearningRate" cfg.LearningRate "a positive finite rate"

        DistillationSpec.validate spec

        let clock = Stopwatch.StartNew()
        let perEpoch = train.BatchesPerEpoch

        if perEpoch < 1 then
            Errors.invalidArg "Trainer.fit" "training batcher" "no batches" "a batcher with at least one batch"

        let totalSteps = cfg.Epochs * perEpoch
        let root = Rng.create cfg.Seed
        let terms = spec.Terms |> List.map (fun t -> t.Term)
        let tProbes = DistillationSpec.teacherProbes spec
        let sProbes = DistillationSpec.studentProbes spec
        let bs = train.Options.BatchSize
        let mutable teacherMacs = 0L
        let mutable studentMacs = 0L
        let mutable usedCache = None

        let evalCfg =
            { EvaluationConfig.Default with
                FiringRates = false
            }

        let runStage (stage: DistillationStage) (teacher: Model option) : StageResult =
            let stageKey = Rng.fold stage.Index root

            let students =
                stage.Students
                |> List.mapi (fun i m ->
                    {
                        Index = i
                        Model = m
                        Probes = sProbes
                        Decays = Optimizer.decays cfg.DecayRule (normNames m.Architecture)
                        Key = Rng.fold i stageKey
                        Params = m.Parameters
                        Buffers = m.Buffers
                        Opt = OptimizerState.Empty
                        Step = 0
                        Owned = HashSet(HashIdentity.Reference)
                        BestParams = m.Parameters
                        BestBuffers = m.Buffers
                        BestEpoch = -1
                        BestAcc = None
                        History = ResizeArray()
                        LossSum = 0.0
                        Correct = 0L
                        Seen = 0L
                        Batches = 0
                    })
                |> Array.ofList

            let cache =
                match teacher, stage.Index, cfg.TeacherCache with
                | _, _, TeacherCacheMode.Off
                | None, _, _ -> None
                | Some _, i, _ when i > 0 -> None
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
                cfg.Cancellation.ThrowIfCancellationRequested()
                let step = st.Step + 1
                let labels = batch.Labels
                let model = { st.Model with Buffers = st.Buffers }

                let ctx =
                    { ForwardContext.Train(Rng.fold step st.Key) with
                        Probes = st.Probes
                    }

                let nTerms = terms.Length
                let scope = TensorScope.Begin()

                try
                    let loss (ps: Parameters) =
                        let out = Model.apply ctx model ps batch.Inputs

                        let total, parts =
                            LossTerm.totalWithParts terms tOut (KdOutputs.ofForward out) labels

                        total,
                        Array.concat
                            [
                                parts |> List.map snd |> Array.ofList
                                [| out.Logits |]
                                Parameters.values out.Buffers
                            ]

                    let v, grads, aux = Parameters.valueAndGradAux loss st.Params
                    let total = v.ToScalar()
                    let parts = terms |> List.mapi (fun i t -> t.Name, aux[i].ToScalar())

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

                    let ps', opt' =
                        Optimizer.step cfg.Optimizer lr cfg.WeightDecay st.Decays st.Opt st.Params grads

                    let logits = aux[nTerms]
                    let buffers' = Parameters.withValues st.Buffers aux[nTerms + 1 ..]

                    let correct =
                        Array.map2 (fun p y -> if p = y then 1 else 0) (Readout.predict logits) labels
                        |> Array.sum

                    let kept = Array.concat [ tensorsOf ps'; stateTensors opt'; tensorsOf buffers' ]
                    let keptSet = HashSet<Storage>(HashIdentity.Reference)

                    for t in kept do
                        escape t
                        keptSet.Add t.Storage |> ignore

                    for s in st.Owned do
                        if not (keptSet.Contains s) then
                            s.Release()

                    // Storages carried over from the initial model are never owned by the trainer.
                    let initial = HashSet<Storage>(HashIdentity.Reference)

                    for t in Array.append (tensorsOf st.Model.Parameters) (tensorsOf st.Model.Buffers) do
                        initial.Add t.Storage |> ignore

                    keptSet.ExceptWith initial
                    st.Owned <- keptSet
                    st.Params <- ps'
                    st.Opt <- opt'
                    st.Buffers <- buffers'
                    st.Step <- step
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
                cfg.OnEpoch report current

            let runEpoch (active: Student[]) (epoch: int) =
                let order = train.SampleOrder epoch

                for batch in train.Epoch epoch do
                    cfg.Cancellation.ThrowIfCancellationRequested()
                    use _ = TensorScope.Begin()
                    let tOut = teacherOutputs order batch

                    for st in active do
                        trainStep st epoch tOut batch

                for st in active do
                    endEpoch st epoch

            match cfg.StudentOrder with
            | StudentOrder.Interleaved ->
                for e in 0 .. cfg.Epochs - 1 do
                    runEpoch students e
            | StudentOrder.Sequential ->
                for st in students do
                    for e in 0 .. cfg.Epochs - 1 do
                        runEpoch [| st |] e

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
                            BestEpoch = st.BestEpoch
                            BestAccuracy = st.BestAcc
                            History = List.ofSeq st.History
                        })
                    |> List.ofArray
            }

        let stages = DistillationSpec.stages spec
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
