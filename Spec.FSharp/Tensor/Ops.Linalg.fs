namespace SnnSpec

open SnnSpec.Kernels

/// Matrix products on the packed AVX-512 GEMM: matmul with NumPy/PyTorch semantics, batched matmul
/// and the affine map of a linear layer. Transposes are folded into the GEMM, never materialised.
[<AutoOpen>]
module LinalgOps =
    module internal LinalgRaw =
        /// C[b] = op(A[b])·op(B[b]) for contiguous stacks; A[b] is m×k (k×m when transA).
        let bmm
            (batch: int)
            (transA: bool)
            (transB: bool)
            (m: int)
            (n: int)
            (k: int)
            (a: Tensor)
            (b: Tensor)
            (outShape: int[])
            =
            let c = Autograd.alloc outShape
            let lda = if transA then m else k
            let ldb = if transB then k else n

            if batch = 1 then
                Gemm.Sgemm(
                    transA,
                    transB,
                    m,
                    n,
                    k,
                    1.0f,
                    a.Data,
                    a.Offset,
                    lda,
                    b.Data,
                    b.Offset,
                    ldb,
                    0.0f,
                    c.Data,
                    0,
                    n
                )
            else
                Gemm.SgemmBatched(
                    batch,
                    transA,
                    transB,
                    m,
                    n,
                    k,
                    1.0f,
                    a.Data,
                    a.Offset,
                    m * k,
                    lda,
                    b.Data,
                    b.Offset,
                    k * n,
                    ldb,
                    0.0f,
                    c.Data,
                    0,
                    m * n,
                    n
                )

            c

    let private view (t: Tensor) (shape: int[]) =
        Autograd.record (Autograd.view (Autograd.detach t) shape) [| t |] (fun g _ -> [| Autograd.view g t.ShapeRef |])

    /// [*, m, k]·[*, k, n] on operands already broadcast to the same batch shape.
    let rec private batched (transA: bool) (transB: bool) (a: Tensor) (b: Tensor) : Tensor =
        let ra, rb = a.ShapeRef, b.ShapeRef
        let r = ra.Length
        let m = if transA then ra[r - 1] else ra[r - 2]
        let k = if transA then ra[r - 2] else ra[r - 1]
        let kb = if transB then rb[r - 1] else rb[r - 2]
        let n = if transB then rb[r - 2] else rb[r - 1]

        if k <> kb then
            Errors.shapeMismatch "matmul" [ ra; rb ] (sprintf "inner dimensions differ (%d vs %d)" k kb)

        let batchShape = ra[.. r - 3]
        let batch = Shape.numel batchShape
        let outShape = Array.append batchShape [| m; n |]
        let c = LinalgRaw.bmm batch transA transB m n k a b outShape
        let a0, b0 = Autograd.detach a, Autograd.detach b

        Autograd.record c [| a; b |] (fun g need ->
            // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G; map back through the transposes.
            [|
                (if not need[0] then Autograd.noGrad
                 elif transA then batched transB true b0 g
                 else batched false (not transB) g b0)
                (if not need[1] then Autograd.noGrad
                 elif transB then batched true transA g a0
                 else batched (not transA) false a0 g)
            |])

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// Matrix product with PyTorch semantics: 1-D·1-D is a dot product, a 1-D operand is promoted
        /// to a row (left) or column (right) vector and the added axis removed afterwards, and leading
        /// batch axes broadcast. [*, m, k]·[*, k, n] → [*, m, n].
        let matmul (a: Tensor) (b: Tensor) =
            if a.Rank = 0 || b.Rank = 0 then
                Errors.shapeMismatch "matmul" [ a.ShapeRef; b.ShapeRef ] "both operands need at least one axis"

            let a2 = if a.Rank = 1 then view a [| 1; a.ShapeRef[0] |] else a
            let b2 = if b.Rank = 1 then view b [| b.ShapeRef[0]; 1 |] else b
            let ra, rb = a2.ShapeRef, b2.ShapeRef
            let ka = ra[ra.Length - 1]
            let kb = rb[rb.Length - 2]

            if ka <> kb then
                Errors.shapeMismatch
                    "matmul"
                    [ a.ShapeRef; b.ShapeRef ]
                    (sprintf "inner dimensions differ (%d vs %d)" ka kb)

            let batchA = ra[.. ra.Length - 3]
            let batchB = rb[.. rb.Length - 3]
            let batch = Shape.broadcast "matmul" batchA batchB

            let full (t: Tensor) (s: int[]) =
                let target = Array.append batch s[s.Length - 2 ..]

                if s = target then
                    t
                elif Shape.numel batch = Shape.numel s[.. s.Length - 3] then
                    view t target
                else
                    Tensor.expand target t

            let c = batched false false (full a2 ra) (full b2 rb)
            let cs = c.ShapeRef

            if a.Rank = 1 && b.Rank = 1 then
                view c [||]
            elif a.Rank = 1 then
                view c (Array.append cs[.. cs.Length - 3] [| cs[cs.Length - 1] |])
            elif b.Rank = 1 then
                view c cs[.. cs.Length - 2]
            else
                c

        /// Batched product of two rank-3 stacks [B, m, k]·[B, k, n] → [B, m, n].
        let bmm (a: Tensor) (b: Tensor) =
            if a.Rank <> 3 || b.Rank <> 3 || a.ShapeRef[0] <> b.ShapeRef[0] then
                Errors.shapeMismatch "bmm" [ a.ShapeRef; b.ShapeRef ] "expected [B, m, k] and [B, k, n] with the same B"

            batched false false a b

        /// Product with the second operand transposed in its last two axes: a·bᵀ.
        let matmulNT (a: Tensor) (b: Tensor) =
            if a.Rank <> b.Rank || a.Rank < 2 then
                Errors.shapeMismatch "matmulNT" [ a.ShapeRef; b.ShapeRef ] "expected operands of equal rank ≥ 2"

            batched false true a b

        /// Affine map of a linear layer: y = x·Wᵀ + b for x [*, in], W [out, in], b [out] → y [*, out].
        let linear (weight: Tensor) (bias: Tensor option) (x: Tensor) =
            let ws = weight.ShapeRef

            if weight.Rank <> 2 || x.Rank < 1 || x.ShapeRef[x.Rank - 1] <> ws[1] then
                Errors.shapeMismatch
                    "linear"
                    [ x.ShapeRef; ws ]
                    "expected x [*, in] and weight [out, in] with matching in"

            let xs = x.ShapeRef
            let rows = Shape.numel xs / ws[1]
            let x2 = if x.Rank = 2 then x else view x [| rows; ws[1] |]
            let y = batched false true x2 weight

            let y =
                match bias with
                | Some b ->
                    if b.ShapeRef <> [| ws[0] |] then
                        Errors.shapeMismatch "linear" [ b.ShapeRef; [| ws[0] |] ] "bias must have shape [out]"

                    y + b
                | None -> y

            if x.Rank = 2 then
                y
            else
                view y (Array.append xs[.. xs.Length - 2] [| ws[0] |])
