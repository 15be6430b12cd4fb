namespace SnnSpec.Distillation

open SnnSpec

/// Shape checks and small helpers shared by the distillation losses. Every check runs before any
/// computation and raises an SnnSpecException that names the operation, both shapes and the fix.
module internal KdShapes =
    let show = Errors.showShape

    /// Requires [B, K] logits (rank 2, K ≥ 1).
    let logits2 (op: string) (what: string) (z: Tensor) =
        if z.Rank <> 2 || z.ShapeRef[1] < 1 then
            Errors.invalidArg op (what + " shape") (show z.ShapeRef) "logits of shape [B, K]"

    /// Requires per-step logits [T, B, K] with T ≥ 1.
    let logits3 (op: string) (what: string) (z: Tensor) =
        if z.Rank <> 3 || z.ShapeRef[0] < 1 || z.ShapeRef[2] < 1 then
            Errors.invalidArg op (what + " shape") (show z.ShapeRef) "per-step logits of shape [T, B, K]"

    /// Labels: one per sample, each in [0, K).
    let labels (op: string) (batch: int) (classes: int) (ys: int[]) =
        if ys.Length <> batch then
            Errors.invalidArg op "labels" (sprintf "%d labels" ys.Length) (sprintf "one label per sample (%d)" batch)

        ys
        |> Array.iteri (fun i y ->
            if y < 0 || y >= classes then
                Errors.invalidArg op (sprintf "label at sample %d" i) y (sprintf "a class in [0, %d)" classes))

    /// Teacher and student logits must agree on the batch size and the class count.
    let sameBatchAndClasses (op: string) (teacher: Tensor) (student: Tensor) =
        let t, s = teacher.ShapeRef, student.ShapeRef

        if t.Length < 2 || s.Length < 2 then
            Errors.shapeMismatch op [ t; s ] "logits must be [B, K] or [T, B, K]"

        let tk, sk = t[t.Length - 1], s[s.Length - 1]
        let tb, sb = t[t.Length - 2], s[s.Length - 2]

        if tk <> sk then
            Errors.shapeMismatch
                op
                [ t; s ]
                (sprintf
                    "the teacher has %d classes but the student has %d; both must predict the same classes (check the heads)"
                    tk
                    sk)

        if tb <> sb then
            Errors.shapeMismatch
                op
                [ t; s ]
                (sprintf "the teacher has batch size %d but the student %d; feed both the same batch" tb sb)

    /// The teacher's logits as one [B, K] tensor, detached: [B, K] as is, [T_T, B, K] by its time-mean.
    let teacherMean (op: string) (teacher: Tensor) =
        let t = Diff.detach teacher

        match t.Rank with
        | 2 -> t
        | 3 -> Tensor.meanDims [| 0 |] false t
        | _ ->
            Errors.invalidArg
                op
                "teacher shape"
                (show t.ShapeRef)
                "ANN teacher logits [B, K] or SNN teacher logits per step [T_T, B, K]"

    let nonNegativeFinite (op: string) (name: string) (v: float32) =
        if not (v >= 0.0f && System.Single.IsFinite v) then
            Errors.invalidArg op name v "a finite value >= 0"

    let positiveTau (op: string) (tau: float32) =
        if not (tau > 0.0f && System.Single.IsFinite tau) then
            Errors.invalidArg op "tau" tau "a finite temperature > 0"
