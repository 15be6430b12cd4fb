namespace SnnSpec.Distillation

open SnnSpec

/// How student step s is matched to the teacher's steps (the "temporal membrane alignment" π of
/// MD-SNN's versatile teacher; methods.md §2a, all three are [R] candidates).
type Alignment =
    /// π(s) = s: the student's t_S steps against the teacher's first t_S steps (needs t_S ≤ T_T).
    /// The default for static, direct-encoded inputs where every step sees the same frame.
    | Prefix
    /// The teacher's T_T steps averaged into t_S bins, bin s covering steps
    /// ⌊s·T_T/t_S⌋ … ⌈(s+1)·T_T/t_S⌉ − 1 (adaptive average pooling; equal bins when t_S divides T_T;
    /// needs t_S ≤ T_T). Preferred for event inputs, where the student's frames span other times.
    | PooledBins
    /// Both sides reduced to their time-mean, then compared (any t_S, T_T).
    | TimeMean

/// Membrane-potential distillation (MD-SNN, Lee et al. DATE 2026, arXiv 2512.04443; its code was
/// not available, so the distance and normalisation are our [R] reading of the paper's figures):
/// L = Σ_{l∈P} (1/t_S) Σ_s mean_{b,…} (H_S^l[s] − H_T^l[π(s)])², with H the membrane after
/// charging, [T, B, …] per probe, and the teacher detached.
[<RequireQualifiedAccess>]
module MembraneKd =
    let private needsShorterStudent =
        function
        | Prefix
        | PooledBins -> true
        | TimeMean -> false

    /// Checks a probe pair before any computation: ranks, per-step shapes (everything after the
    /// time axis) and t_S ≤ T_T where the alignment needs it. Errors name both probes and shapes.
    let check (alignment: Alignment) (teacherName: string, teacherH: Tensor) (studentName: string, studentH: Tensor) =
        let op = "MembraneKd"
        let t, s = teacherH.ShapeRef, studentH.ShapeRef

        if t.Length < 2 || s.Length < 2 || t[0] < 1 || s[0] < 1 then
            Errors.shapeMismatch
                op
                [ t; s ]
                (sprintf
                    "teacher probe '%s' and student probe '%s' must be membranes per step [T, B, ...] with T >= 1"
                    teacherName
                    studentName)

        if t[1..] <> s[1..] then
            Errors.shapeMismatch
                op
                [ t; s ]
                (sprintf
                    "teacher probe '%s' has per-step shape %s but student probe '%s' has %s; add an adapter that maps the student's membrane to the teacher's shape, or tap another probe whose shape matches"
                    teacherName
                    (Errors.showShape t[1..])
                    studentName
                    (Errors.showShape s[1..]))

        if needsShorterStudent alignment && s[0] > t[0] then
            Errors.shapeMismatch
                op
                [ t; s ]
                (sprintf
                    "student probe '%s' runs t_S = %d steps but teacher probe '%s' only T_T = %d; %A alignment needs t_S <= T_T: use TimeMean alignment or a teacher run with at least %d steps"
                    studentName
                    s[0]
                    teacherName
                    t[0]
                    alignment
                    s[0])

    /// The teacher's membranes aligned to the student's steps, detached: [t_S, B, …] for Prefix and
    /// PooledBins, [1, B, …] (the time-mean) for TimeMean. teacherH [T_T, B, …].
    let align (alignment: Alignment) (studentSteps: int) (teacherH: Tensor) =
        let h = Diff.detach teacherH
        let tt = h.ShapeRef[0]

        if studentSteps < 1 || (needsShorterStudent alignment && studentSteps > tt) then
            Errors.invalidArg
                "MembraneKd.align"
                "studentSteps"
                studentSteps
                (sprintf "1 <= t_S <= T_T = %d for %A alignment (TimeMean accepts any t_S)" tt alignment)

        match alignment with
        | Prefix -> Tensor.narrow 0 0 studentSteps h
        | TimeMean -> Tensor.meanDims [| 0 |] true h
        | PooledBins ->
            [
                for s in 0 .. studentSteps - 1 do
                    let lo = s * tt / studentSteps
                    let hi = ((s + 1) * tt + studentSteps - 1) / studentSteps
                    Tensor.meanDims [| 0 |] false (Tensor.narrow 0 lo (hi - lo) h)
            ]
            |> Tensor.stack 0

    /// (1/t_S) Σ_s mean (H_S[s] − H_T[π(s)])² for one named probe pair (TimeMean: the squared
    /// difference of the two time-means, averaged). teacherH [T_T, B, …], studentH [t_S, B, …].
    let msePair (alignment: Alignment) (teacherName: string, teacherH: Tensor) (studentName: string, studentH: Tensor) =
        check alignment (teacherName, teacherH) (studentName, studentH)
        let target = align alignment studentH.ShapeRef[0] teacherH

        let student =
            match alignment with
            | TimeMean -> Tensor.meanDims [| 0 |] true studentH
            | _ -> studentH

        Tensor.mse student target

    /// <c>msePair</c> for unnamed tensors: <c>mse alignment teacherH studentH</c>.
    let mse (alignment: Alignment) (teacherH: Tensor) (studentH: Tensor) =
        msePair alignment ("teacher", teacherH) ("student", studentH)

    /// Σ over probe pairs (teacher probe, student probe) of <c>msePair</c>, looked up in the two
    /// maps (e.g. ForwardOutput.Membranes). Every pair is checked (names present, shapes, steps)
    /// before anything is computed. An empty list is an error.
    let mseProbes
        (alignment: Alignment)
        (pairs: (string * string) list)
        (teacher: Map<string, Tensor>)
        (student: Map<string, Tensor>)
        =
        let op = "MembraneKd.mseProbes"

        if List.isEmpty pairs then
            Errors.invalidArg op "probe pairs" "[]" "at least one (teacher probe, student probe) pair"

        let find side (m: Map<string, Tensor>) name =
            match Map.tryFind name m with
            | Some h -> h
            | None ->
                Errors.invalidArg
                    op
                    (side + " probe")
                    name
                    (sprintf
                        "one of the recorded %s membranes: %s (record it with a membrane probe)"
                        side
                        (if m.IsEmpty then
                             "(none)"
                         else
                             String.concat ", " (Map.keys m)))

        let resolved =
            pairs
            |> List.map (fun (tn, sn) ->
                let th, sh = find "teacher" teacher tn, find "student" student sn
                check alignment (tn, th) (sn, sh)
                (tn, th), (sn, sh))

        resolved |> List.map (fun (t, s) -> msePair alignment t s) |> List.reduce (+)

    /// <c>mseProbes</c> with the same probe names on both sides.
    let mseMaps
        (alignment: Alignment)
        (names: string list)
        (teacher: Map<string, Tensor>)
        (student: Map<string, Tensor>)
        =
        mseProbes alignment (names |> List.map (fun n -> n, n)) teacher student
