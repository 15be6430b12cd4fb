namespace SnnSpec.Training

open System
open SnnSpec
open SnnSpec.Distillation

/// What a loss term reads from the teacher and student runs. Declaring it lets the spec request
/// exactly those probes from both forward runs and check names and shapes before training.
[<RequireQualifiedAccess>]
type TapUse =
    /// The teacher's logits (class counts must agree).
    | TeacherLogits
    /// Membranes of a teacher and a student population, matched in time by the alignment.
    | Membrane of teacher: string * student: string * alignment: Alignment
    /// Spike tensors of a teacher and a student population (same T, batch and neurons).
    | Spikes of teacher: string * student: string
    /// Tapped features; <c>adapter</c> = a 1×1 adapter maps the student's channels to the teacher's.
    | Feature of teacher: string * student: string * adapter: bool
    /// A student-only membrane, spike or tap probe (self-distillation, regularisers).
    | StudentMembrane of string
    | StudentSpikes of string
    | StudentTap of string

/// A loss term and what it reads.
type SpecTerm = { Term: LossTerm; Uses: TapUse list }

/// Where the teacher signal comes from.
[<RequireQualifiedAccess>]
type TeacherSpec =
    /// No teacher: the students train on their own terms (cross-entropy, TWSD…).
    | NoTeacher
    /// A trained, frozen model: an SNN (Mode = Snn T) or an ANN (Mode = Ann).
    | Frozen of Model
    /// Multi-stage KD T → TA₁ → … → S (methods.md §5a): each assistant is trained from the model
    /// before it, then frozen and used as the next stage's teacher; the spec's students train last.
    | Chain of teacher: Model * assistants: Model list

/// A distillation objective as a value: teacher, students and weighted terms. Several students
/// with the same teacher are a versatile-teacher run (MD-SNN, methods.md §2a): one teacher, e.g.
/// T = 4, supervising students at t = 1…4; each student has its own parameters.
type DistillationSpec =
    {
        Teacher: TeacherSpec
        Students: Model list
        Terms: SpecTerm list
    }

/// One teacher/student pairing of a spec (a chain has one per stage).
type DistillationStage =
    {
        /// 0-based stage number.
        Index: int
        /// The frozen teacher (None: train alone). In a chain, stages after the first receive the
        /// previous stage's trained model here when they run.
        Teacher: Model option
        Students: Model list
    }

/// Spec terms mirroring <c>LossTerm</c>'s built-ins with their tap uses declared.
[<RequireQualifiedAccess>]
module SpecTerm =
    /// Any loss term with its declared uses.
    let ofTerm (uses: TapUse list) (term: LossTerm) = { Term = term; Uses = uses }

    /// Student cross-entropy with label smoothing ε on the time-mean logits.
    let crossEntropy eps weight =
        ofTerm [] (LossTerm.crossEntropy eps weight)

    /// Student cross-entropy with label smoothing ε on its outputs read out by <c>readout</c>
    /// (TimeReadout.Count: the spike counts of a spiking output population).
    let crossEntropyWith readout eps weight =
        ofTerm [] (LossTerm.crossEntropyWith readout eps weight)

    /// Per-step cross-entropy (TET / TWCE).
    let perStepCrossEntropy weight =
        ofTerm [] (LossTerm.perStepCrossEntropy weight)

    /// Logit KD KL_τ on time-mean logits.
    let logitKd tau weight =
        ofTerm [ TapUse.TeacherLogits ] (LossTerm.logitKd tau weight)

    /// WSLD on time-mean logits.
    let wsld tau weight =
        ofTerm [ TapUse.TeacherLogits ] (LossTerm.wsld tau weight)

    /// Temporal-wise KD (TWCE + α·TWKL + β·TWSD).
    let temporal cfg =
        ofTerm [ TapUse.TeacherLogits ] (LossTerm.temporal cfg)

    /// Membrane KD over populations of the same name on both sides.
    let membrane alignment (names: string list) weight =
        ofTerm
            (names |> List.map (fun n -> TapUse.Membrane(n, n, alignment)))
            (LossTerm.membrane alignment names weight)

    /// Membrane KD over (teacher, student) population pairs.
    let membranePairs alignment (pairs: (string * string) list) weight =
        ofTerm
            (pairs |> List.map (fun (t, s) -> TapUse.Membrane(t, s, alignment)))
            (LossTerm.membranePairs alignment pairs weight)

    /// The combined spike loss on one population present on both sides.
    let spikes cfg probe weight =
        ofTerm [ TapUse.Spikes(probe, probe) ] (LossTerm.spikes cfg probe weight)

    /// Feature MSE between taps after the 1×1 adapter in ps, if it has one (FeatureKd.initAdapter);
    /// the adapter is trained with the student.
    let feature (ps: Parameters) teacherTap studentTap weight =
        let adapter = ps.TryFind "adapter.weight" |> Option.isSome
        ofTerm [ TapUse.Feature(teacherTap, studentTap, adapter) ] (LossTerm.feature ps teacherTap studentTap weight)

    /// Blurred KD (BKDSNN, methods.md §4a) between taps with the adapter and restoration block ps
    /// (BlurredKd.init), trained with the student; masks keyed from rng and the trainer's step key.
    let blurred cfg (ps: Parameters) rng teacherTap studentTap weight =
        let adapter = ps.TryFind "adapter.weight" |> Option.isSome

        ofTerm
            [ TapUse.Feature(teacherTap, studentTap, adapter) ]
            (LossTerm.blurred cfg ps rng teacherTap studentTap weight)

    /// The channel count (axis 2 of [T, B, C, …]) of a model's tap, from a forward pass on a
    /// 2-sample zero batch; a missing tap raises an error listing the model's taps.
    let private tapChannels (op: string) (side: string) (m: Model) (tap: string) =
        let shape =
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()
                let x = Tensor.zeros (Architecture.batchShape 2 m.Architecture)

                let out =
                    Model.forward
                        { ForwardContext.Eval with
                            Probes =
                                { ProbeRequest.None with
                                    Taps = Set.singleton tap
                                }
                        }
                        m
                        x

                out.Taps[tap].Shape)

        if shape.Length < 3 then
            Errors.invalidArg
                op
                (sprintf "%s tap '%s'" side tap)
                (Errors.showShape shape)
                "a tap [T, B, C, …] with a channel axis"

        shape[2]

    /// Feature MSE between the taps of these teacher and student models, with a 1×1 adapter
    /// initialised from seed (FeatureKd.initAdapter) when their channel counts differ.
    let featureFor (seed: int) (teacher: Model) (student: Model) teacherTap studentTap weight =
        let op = "SpecTerm.featureFor"
        let ct = tapChannels op "teacher" teacher teacherTap
        let cs = tapChannels op "student" student studentTap

        let ps =
            if cs <> ct then
                FeatureKd.initAdapter seed cs ct
            else
                Parameters.ofList []

        feature ps teacherTap studentTap weight

    /// Blurred KD between the taps of these teacher and student models (e.g. Probes.featureMap on
    /// both): adapter (when the channel counts differ) and restoration block initialised from seed
    /// for the taps' channels (BlurredKd.init), masks keyed from seed.
    let blurredFor (cfg: BlurredConfig) (seed: int) (teacher: Model) (student: Model) teacherTap studentTap weight =
        let op = "SpecTerm.blurredFor"
        let ct = tapChannels op "teacher" teacher teacherTap
        let cs = tapChannels op "student" student studentTap
        blurred cfg (BlurredKd.init seed cs ct) (Rng.create seed) teacherTap studentTap weight

module DistillationSpec =
    /// A spec with one frozen teacher.
    let create (teacher: Model) (students: Model list) (terms: SpecTerm list) =
        {
            Teacher = TeacherSpec.Frozen teacher
            Students = students
            Terms = terms
        }

    /// Students trained without a teacher (the baseline of a KD comparison).
    let alone (students: Model list) (terms: SpecTerm list) =
        {
            Teacher = TeacherSpec.NoTeacher
            Students = students
            Terms = terms
        }

    /// Teacher → assistants → student(s), each stage with the same terms.
    let chain (teacher: Model) (assistants: Model list) (students: Model list) (terms: SpecTerm list) =
        {
            Teacher = TeacherSpec.Chain(teacher, assistants)
            Students = students
            Terms = terms
        }

    /// A versatile teacher: one teacher supervising copies of <c>student</c> run at each of the
    /// given step counts (each copy trains its own parameters from the same initial values).
    let versatile (teacher: Model) (student: Model) (steps: int list) (terms: SpecTerm list) =
        create teacher (steps |> List.map (fun t -> Model.withSteps t student)) terms

    /// The stages in training order. A chain's later stages list their teacher as the previous
    /// stage's untrained model; the trainer substitutes the trained one.
    let stages (spec: DistillationSpec) : DistillationStage list =
        match spec.Teacher with
        | TeacherSpec.NoTeacher ->
            [
                {
                    Index = 0
                    Teacher = None
                    Students = spec.Students
                }
            ]
        | TeacherSpec.Frozen t ->
            [
                {
                    Index = 0
                    Teacher = Some t
                    Students = spec.Students
                }
            ]
        | TeacherSpec.Chain(t, assistants) ->
            let teachers = t :: assistants
            let students = (assistants |> List.map (fun a -> [ a ])) @ [ spec.Students ]

            List.zip teachers students
            |> List.mapi (fun i (t, s) ->
                {
                    Index = i
                    Teacher = Some t
                    Students = s
                })

    let private uses (spec: DistillationSpec) =
        spec.Terms |> List.collect (fun t -> t.Uses)

    /// The probes a teacher run must record for the spec's terms.
    let teacherProbes (spec: DistillationSpec) : ProbeRequest =
        uses spec
        |> List.fold
            (fun (r: ProbeRequest) u ->
                match u with
                | TapUse.Membrane(t, _, _) -> { r with Membranes = r.Membranes.Add t }
                | TapUse.Spikes(t, _) -> { r with Spikes = r.Spikes.Add t }
                | TapUse.Feature(t, _, _) -> { r with Taps = r.Taps.Add t }
                | _ -> r)
            ProbeRequest.None

    /// The probes a student run must record for the spec's terms.
    let studentProbes (spec: DistillationSpec) : ProbeRequest =
        uses spec
        |> List.fold
            (fun (r: ProbeRequest) u ->
                match u with
                | TapUse.Membrane(_, s, _)
                | TapUse.StudentMembrane s -> { r with Membranes = r.Membranes.Add s }
                | TapUse.Spikes(_, s)
                | TapUse.StudentSpikes s -> { r with Spikes = r.Spikes.Add s }
                | TapUse.Feature(_, s, _)
                | TapUse.StudentTap s -> { r with Taps = r.Taps.Add s }
                | TapUse.TeacherLogits -> r)
            ProbeRequest.None

    let private steps (m: Model) =
        match m.Mode with
        | ExecutionMode.Snn t -> t
        | ExecutionMode.Ann -> 1

    let private describe (m: Model) =
        match m.Mode with
        | ExecutionMode.Snn t -> sprintf "%s (SNN, T = %d)" m.Architecture.Name t
        | ExecutionMode.Ann -> sprintf "%s (ANN)" m.Architecture.Name

    let private tapNames (arch: Architecture) =
        Architecture.layers arch
        |> List.choose (fun (n, l) ->
            match l with
            | Tap _ -> Some n
            | _ -> None)
        |> Set.ofList

    /// Shapes of the requested probes on a 2-sample zero batch in eval mode: kind → name → shape.
    let private probeShapes (m: Model) (probes: ProbeRequest) =
        Diff.noGrad (fun () ->
            use _ = TensorScope.Begin()
            let x = Tensor.zeros (Architecture.batchShape 2 m.Architecture)

            let out =
                Model.forward
                    { ForwardContext.Eval with
                        Probes = probes
                    }
                    m
                    x

            let shapes (mp: Map<string, Tensor>) = mp |> Map.map (fun _ t -> t.Shape)
            shapes out.Membranes, shapes out.Spikes, shapes out.Taps)

    /// Checks one teacher/student pairing; returns the problems found.
    let private checkPair (spec: DistillationSpec) (teacher: Model option) (student: Model) : string list =
        let errors = ResizeArray<string>()
        let err fmt = Printf.kprintf errors.Add fmt
        let sArch = student.Architecture
        let sSpiking = Architecture.spikingNames sArch |> Set.ofList
        let sTaps = tapNames sArch
        let sName = describe student

        let listOf (s: Set<string>) =
            if s.IsEmpty then "(none)" else String.Join(", ", s)

        let studentSnn =
            match student.Mode with
            | ExecutionMode.Snn _ -> true
            | _ -> false

        let lacks
            (term: string)
            (side: string)
            (kind: string)
            (name: string)
            (modelName: string)
            (known: Set<string>)
            (fix: string)
            =
            err
                "loss term '%s' reads %s %s '%s', which %s lacks; available: %s. Fix: name one of these%s."
                term
                side
                kind
                name
                modelName
                (listOf known)
                fix

        // Names on the student side.
        for t in spec.Terms do
            for u in t.Uses do
                match u with
                | TapUse.Membrane(_, s, _)
                | TapUse.Spikes(_, s)
                | TapUse.StudentMembrane s
                | TapUse.StudentSpikes s ->
                    if not (sSpiking.Contains s) then
                        lacks t.Term.Name "student" "population" s sName sSpiking ""
                    elif not studentSnn then
                        err
                            "loss term '%s' reads student population '%s', but the student %s runs as an ANN and records no membranes or spikes. Fix: run the student as an SNN or use a feature tap."
                            t.Term.Name
                            s
                            sName
                | TapUse.Feature(_, s, _)
                | TapUse.StudentTap s ->
                    if not (sTaps.Contains s) then
                        lacks t.Term.Name "student" "tap" s sName sTaps " or add a Tap layer"
                | TapUse.TeacherLogits -> ()

        match teacher with
        | None ->
            for t in spec.Terms do
                for u in t.Uses do
                    match u with
                    | TapUse.StudentMembrane _
                    | TapUse.StudentSpikes _
                    | TapUse.StudentTap _ -> ()
                    | _ ->
                        err
                            "loss term '%s' reads the teacher (%A), but the spec has no teacher. Fix: give a teacher (DistillationSpec.create) or drop the term."
                            t.Term.Name
                            u
        | Some tm ->
            let tArch = tm.Architecture
            let tName = describe tm
            let tSpiking = Architecture.spikingNames tArch |> Set.ofList
            let tTaps = tapNames tArch

            let teacherSnn =
                match tm.Mode with
                | ExecutionMode.Snn _ -> true
                | _ -> false

            if tArch.Classes <> sArch.Classes then
                err
                    "teacher %s predicts %d classes but student %s predicts %d; teacher logits [T, B, %d] and student logits [T, B, %d] cannot be compared. Fix: give both heads the same class count."
                    tName
                    tArch.Classes
                    sName
                    sArch.Classes
                    tArch.Classes
                    sArch.Classes

            let mutable namesOk = true

            for t in spec.Terms do
                for u in t.Uses do
                    match u with
                    | TapUse.Membrane(tp, _, _)
                    | TapUse.Spikes(tp, _) ->
                        if not teacherSnn then
                            namesOk <- false

                            err
                                "loss term '%s' reads teacher population '%s', but the teacher %s is an ANN and records no membranes or spikes. Fix: use an SNN teacher, or a feature tap (TapUse.Feature) with logits KD."
                                t.Term.Name
                                tp
                                tName
                        elif not (tSpiking.Contains tp) then
                            namesOk <- false
                            lacks t.Term.Name "teacher" "population" tp tName tSpiking ""
                    | TapUse.Feature(tp, _, _) ->
                        if not (tTaps.Contains tp) then
                            namesOk <- false
                            lacks t.Term.Name "teacher" "tap" tp tName tTaps " or add a Tap layer"
                    | _ -> ()

            if namesOk && errors.Count = 0 then
                let tMem, tSpk, tTap = probeShapes tm (teacherProbes spec)
                let sMem, sSpk, sTap = probeShapes student (studentProbes spec)
                let show = Errors.showShape
                let tT, sT = steps tm, steps student

                for t in spec.Terms do
                    for u in t.Uses do
                        match u with
                        | TapUse.Membrane(tp, sp, align) ->
                            let ts, ss = tMem[tp], sMem[sp]

                            if ts[1..] <> ss[1..] then
                                err
                                    "loss term '%s': teacher membrane '%s' %s and student membrane '%s' %s differ per step (%s vs %s) and membranes have no adapter. Fix: pair populations of equal shape (another probe) or use a feature tap with an adapter."
                                    t.Term.Name
                                    tp
                                    (show ts)
                                    sp
                                    (show ss)
                                    (show ts[1..])
                                    (show ss[1..])
                            elif (align = Prefix || align = PooledBins) && sT > tT then
                                err
                                    "loss term '%s': student membrane '%s' %s runs t_S = %d steps but teacher membrane '%s' %s only T_T = %d; %A alignment needs t_S <= T_T. Fix: use Alignment.TimeMean, or a teacher run with at least %d steps (Model.withSteps)."
                                    t.Term.Name
                                    sp
                                    (show ss)
                                    sT
                                    tp
                                    (show ts)
                                    tT
                                    align
                                    sT
                        | TapUse.Spikes(tp, sp) ->
                            let ts, ss = tSpk[tp], sSpk[sp]

                            if ts <> ss then
                                err
                                    "loss term '%s': teacher spikes '%s' %s and student spikes '%s' %s differ; spike-tensor losses compare [T, B, …] element by element. Fix: run both at the same T and pair populations of equal size (another probe)."
                                    t.Term.Name
                                    tp
                                    (show ts)
                                    sp
                                    (show ss)
                        | TapUse.Feature(tp, sp, adapter) ->
                            let ts, ss = tTap[tp], sTap[sp]
                            let perT, perS = ts[1..], ss[1..]
                            // Blurred KD restores a student map [B, C, h, w] against a teacher vector
                            // [B, C] by its spatial mean (methods.md §4a, a ViT teacher's embedding).
                            let blurred = t.Term.Parameters.TryFind "restore.conv1.weight" |> Option.isSome

                            let vectorTeacher =
                                blurred && perT.Length = 2 && perS.Length = 4 && perT[0] = perS[0]

                            if blurred && perS.Length <> 4 then
                                err
                                    "loss term '%s': student tap '%s' %s must be a map [T, B, C, h, w]: blurred KD restores maps with 3×3 convolutions. Fix: tap the student's last map (the zoo's \"feature_map\")."
                                    t.Term.Name
                                    sp
                                    (show ss)
                            elif not adapter && perT <> perS && not (vectorTeacher && perT[1] = perS[1]) then
                                err
                                    "loss term '%s': teacher tap '%s' %s and student tap '%s' %s differ per step (%s vs %s) and no adapter is configured. Fix: %s, or tap a layer of the teacher's shape."
                                    t.Term.Name
                                    tp
                                    (show ts)
                                    sp
                                    (show ss)
                                    (show perT)
                                    (show perS)
                                    (let cs, ct =
                                        (if perS.Length > 1 then perS[1] else 0),
                                        (if perT.Length > 1 then perT[1] else 0)

                                     if blurred then
                                         sprintf
                                             "initialise the term with an adapter (BlurredKd.init seed %d %d, or SpecTerm.blurredFor)"
                                             cs
                                             ct
                                     else
                                         sprintf "add a 1×1 adapter (FeatureKd.initAdapter %d %d)" cs ct)
                            elif
                                adapter
                                && not vectorTeacher
                                && (perT.Length <> perS.Length || perT[0] <> perS[0] || perT[2..] <> perS[2..])
                            then
                                err
                                    "loss term '%s': teacher tap '%s' %s and student tap '%s' %s differ in more than the channel axis; a 1×1 adapter only maps channels. Fix: tap layers of equal batch and spatial size."
                                    t.Term.Name
                                    tp
                                    (show ts)
                                    sp
                                    (show ss)
                            elif perT.Length > 1 && perS.Length > 1 then
                                let ct, cs = perT[1], perS[1]

                                match t.Term.Parameters.TryFind "adapter.weight" with
                                | Some w when w.ShapeRef <> [| ct; cs; 1; 1 |] ->
                                    err
                                        "loss term '%s': its adapter weight %s does not map student tap '%s' %s (%d channels) to teacher tap '%s' %s (%d channels); it needs [%d, %d, 1, 1]. Fix: initialise it for these taps (FeatureKd.initAdapter seed %d %d, BlurredKd.init seed %d %d, or SpecTerm.featureFor / blurredFor)."
                                        t.Term.Name
                                        (show w.ShapeRef)
                                        sp
                                        (show ss)
                                        cs
                                        tp
                                        (show ts)
                                        ct
                                        ct
                                        cs
                                        cs
                                        ct
                                        cs
                                        ct
                                | _ -> ()

                                match t.Term.Parameters.TryFind "restore.conv1.weight" with
                                | Some w when w.ShapeRef.Length = 4 && w.ShapeRef[1] <> ct ->
                                    err
                                        "loss term '%s': its restoration block works on %d channels but teacher tap '%s' %s has %d. Fix: initialise it for these taps (BlurredKd.init seed %d %d or SpecTerm.blurredFor)."
                                        t.Term.Name
                                        w.ShapeRef[1]
                                        tp
                                        (show ts)
                                        ct
                                        cs
                                        ct
                                | _ -> ()
                        | _ -> ()

        List.ofSeq errors

    /// Checks the spec before any training: non-empty students and terms, finite non-negative
    /// weights, every named population or tap present on its side, equal class counts, matching
    /// probe shapes (or an adapter), and t_S ≤ T_T where the alignment needs it; for a chain, every
    /// stage. Raises one SnnSpecException listing every problem, each naming both taps, both
    /// shapes and the fix.
    let validate (spec: DistillationSpec) =
        let errors = ResizeArray<string>()

        if spec.Students.IsEmpty then
            errors.Add "the spec has no student. Fix: give at least one student model."

        if spec.Terms.IsEmpty then
            errors.Add "the spec has no loss term. Fix: add at least one (e.g. SpecTerm.crossEntropy 0.0f 1.0f)."

        for t in spec.Terms do
            if not (t.Term.Weight >= 0.0f && Single.IsFinite t.Term.Weight) then
                errors.Add(
                    sprintf
                        "loss term '%s' has weight %g; weights must be finite and >= 0. Fix: drop the term instead of a negative weight."
                        t.Term.Name
                        t.Term.Weight
                )

        let withParameters =
            spec.Terms
            |> List.filter (fun t -> t.Term.Parameters.Count > 0)
            |> List.map (fun t -> t.Term.Name)

        for name in List.distinct withParameters do
            if withParameters |> List.filter ((=) name) |> List.length > 1 then
                errors.Add(
                    sprintf
                        "several loss terms named '%s' carry trainable parameters, which the trainer names \"loss.%s.<name>\". Fix: give them distinct names ({ term with Name = \"%s-2\" })."
                        name
                        name
                        name
                )

        if errors.Count = 0 then
            for stage in stages spec do
                for s in stage.Students do
                    for e in checkPair spec stage.Teacher s do
                        let prefix =
                            match spec.Teacher with
                            | TeacherSpec.Chain _ -> sprintf "stage %d: " (stage.Index + 1)
                            | _ -> ""

                        if not (errors.Contains(prefix + e)) then
                            errors.Add(prefix + e)

        if errors.Count > 0 then
            raise (
                SnnSpecException(
                    "DistillationSpec.validate: "
                    + String.Join("\n  ", errors |> Seq.map (fun e -> "- " + e) |> Seq.append [ "" ])
                )
            )

/// How a versatile teacher's forward pass is shared among its students.
[<RequireQualifiedAccess>]
type TeacherReuse =
    /// Students trained in sequence, each re-running the teacher on every batch.
    | PerStudent
    /// Students interleaved per batch: one teacher forward per batch serves all of them.
    | PerBatch
    /// Teacher outputs cached once for the training set and read back every epoch.
    | Cached

/// Training cost of a versatile teacher against one teacher per timestep, in MACs per training
/// sample (see <c>Flops</c>).
type VersatileCost =
    {
        StudentSteps: int list
        TeacherSteps: int
        /// Teacher training at T_T + KD of every student sharing that teacher.
        Versatile: int64
        /// For each t: a teacher trained at t + KD of the student at t by it.
        PerTimestep: int64
        /// 1 − Versatile / PerTimestep.
        Saving: float
    }

module VersatileCost =
    /// Training MACs per sample of MD-SNN's two schemes (methods.md §2a, Fig. 4b reports 30 %
    /// fewer FLOPs): teacher epochs E_T, student epochs E_S. Versatile = E_T·train(teacher@T_T) +
    /// teacher forwards (E_S·n, E_S or 1 by reuse) ·fwd(teacher@T_T) + E_S·Σ_t train(student@t);
    /// per timestep = Σ_t [E_T·train(teacher@t) + E_S·(fwd(teacher@t) + train(student@t))].
    let compute
        (reuse: TeacherReuse)
        (teacherEpochs: int)
        (studentEpochs: int)
        (teacher: Architecture)
        (teacherSteps: int)
        (student: Architecture)
        (studentSteps: int list)
        =
        let snn t = ExecutionMode.Snn t
        let et, es = int64 teacherEpochs, int64 studentEpochs
        let n = int64 studentSteps.Length

        let teacherForwards =
            match reuse with
            | TeacherReuse.PerStudent -> es * n
            | TeacherReuse.PerBatch -> es
            | TeacherReuse.Cached -> 1L

        let studentsTrain =
            studentSteps |> List.sumBy (fun t -> Flops.trainingMacs student (snn t))

        let versatile =
            et * Flops.trainingMacs teacher (snn teacherSteps)
            + teacherForwards * Flops.forwardMacs teacher (snn teacherSteps)
            + es * studentsTrain

        let perTimestep =
            studentSteps
            |> List.sumBy (fun t ->
                et * Flops.trainingMacs teacher (snn t)
                + es * (Flops.forwardMacs teacher (snn t) + Flops.trainingMacs student (snn t)))

        {
            StudentSteps = studentSteps
            TeacherSteps = teacherSteps
            Versatile = versatile
            PerTimestep = perTimestep
            Saving = 1.0 - float versatile / float perTimestep
        }
