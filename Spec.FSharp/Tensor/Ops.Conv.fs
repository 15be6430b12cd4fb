namespace SnnSpec

open SnnSpec.Kernels

/// Differentiable 2-D convolution, pooling and upsampling on NCHW tensors, over the raw kernels
/// in Kernels/Conv.fs, Pool.fs and Upsample.fs (im2col + GEMM, parallel over images).
[<AutoOpen>]
module ConvOps =
    let private checkRank4 (op: string) (x: Tensor) =
        if x.Rank <> 4 then
            Errors.shapeMismatch op [ x.ShapeRef ] "expected an NCHW tensor [N, C, H, W]"

    [<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
    module Tensor =
        /// 2-D convolution y = x ⋆ W + b with x [N, C, H, W], W [O, C/groups, KH, KW] (square
        /// kernels), b [O] → y [N, O, Ho, Wo], Ho = ⌊(H + 2p − d(KH − 1) − 1)/s⌋ + 1.
        /// Backward: dx by the transposed convolution (col2im), dW by the correlation of x with dy, db by summing dy.
        let conv2dWith
            (stride: int)
            (padding: int)
            (dilation: int)
            (groups: int)
            (weight: Tensor)
            (bias: Tensor option)
            (x: Tensor)
            =
            checkRank4 "conv2d" x
            let ws = weight.ShapeRef
            let xs = x.ShapeRef

            if weight.Rank <> 4 || ws[2] <> ws[3] then
                Errors.shapeMismatch "conv2d" [ xs; ws ] "the weight must be [O, C/groups, K, K]"

            if groups < 1 || xs[1] % groups <> 0 || ws[0] % groups <> 0 then
                Errors.invalidArg
                    "conv2d"
                    "groups"
                    groups
                    (sprintf "a divisor of both channel counts (%d in, %d out)" xs[1] ws[0])

            if ws[1] * groups <> xs[1] then
                Errors.shapeMismatch
                    "conv2d"
                    [ xs; ws ]
                    (sprintf
                        "the weight expects %d input channels (%d per group × %d groups) but x has %d"
                        (ws[1] * groups)
                        ws[1]
                        groups
                        xs[1])

            let g =
                Conv2dGeometry.Create(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], stride, padding, dilation, groups)

            Conv.validate g

            match bias with
            | Some b when b.ShapeRef <> [| ws[0] |] ->
                Errors.shapeMismatch "conv2d" [ b.ShapeRef; [| ws[0] |] ] "the bias must be [O]"
            | _ -> ()

            let y = Autograd.alloc [| g.N; g.O; g.Ho; g.Wo |]

            let biasData, biasOff =
                match bias with
                | Some b -> Some b.Data, b.Offset
                | None -> None, 0

            Conv.forward g x.Data x.Offset weight.Data weight.Offset biasData biasOff y.Data 0
            let x0, w0 = Autograd.detach x, Autograd.detach weight

            let inputs =
                match bias with
                | Some b -> [| x; weight; b |]
                | None -> [| x; weight |]

            Autograd.record y inputs (fun dy need ->
                let dx =
                    if need[0] then
                        let dx = Autograd.alloc xs
                        Conv.backwardData g dy.Data dy.Offset w0.Data w0.Offset dx.Data 0 false
                        dx
                    else
                        Autograd.noGrad

                let dw =
                    if need[1] then
                        let dw = Autograd.alloc ws
                        Conv.backwardWeight g x0.Data x0.Offset dy.Data dy.Offset dw.Data 0 false
                        dw
                    else
                        Autograd.noGrad

                if inputs.Length = 3 then
                    let db =
                        if need[2] then
                            let db = Autograd.alloc [| g.O |]
                            Conv.biasGrad g dy.Data dy.Offset db.Data 0 false
                            db
                        else
                            Autograd.noGrad

                    [| dx; dw; db |]
                else
                    [| dx; dw |])

        /// Convolution with dilation 1 and one group.
        let conv2d (stride: int) (padding: int) (weight: Tensor) (bias: Tensor option) (x: Tensor) =
            conv2dWith stride padding 1 1 weight bias x

        /// Max pooling over k×k windows (stride s, zero padding p counted as −∞); the gradient goes to
        /// each window's maximal element.
        let maxPool2d (kernel: int) (stride: int) (padding: int) (x: Tensor) =
            checkRank4 "maxPool2d" x
            let xs = x.ShapeRef
            let g = Pool2dGeometry.Create(xs[0], xs[1], xs[2], xs[3], kernel, stride, padding)
            Pool.validateWindow "Tensor.maxPool2d" g
            let y = Autograd.alloc [| g.N; g.C; g.Ho; g.Wo |]

            // Indices pooled with the scope (not a fresh LOH array per call); 2×2 windows of stride 2
            // keep one byte per output (the place in its window) instead of an int.
            if Pool.isPair g then
                let codes = StorageAlloc.ints ((y.Numel + 3) / 4)
                Pool.maxForwardPair g x.Data x.Offset y.Data 0 codes

                Autograd.record y [| x |] (fun dy _ ->
                    let dx = Autograd.alloc xs
                    Pool.maxBackwardPair g dy.Data dy.Offset codes dx.Data 0
                    [| dx |])
            else
                let idx = StorageAlloc.ints y.Numel
                Pool.maxForward g x.Data x.Offset y.Data 0 idx 0

                Autograd.record y [| x |] (fun dy _ ->
                    let dx = Autograd.alloc xs
                    Pool.maxBackward g dy.Data dy.Offset idx 0 dx.Data 0 false
                    [| dx |])

        /// Average pooling over k×k windows (padding counted in the divisor, as PyTorch's default).
        let avgPool2d (kernel: int) (stride: int) (padding: int) (x: Tensor) =
            checkRank4 "avgPool2d" x
            let xs = x.ShapeRef
            let g = Pool2dGeometry.Create(xs[0], xs[1], xs[2], xs[3], kernel, stride, padding)
            Pool.validateWindow "Tensor.avgPool2d" g
            let y = Autograd.alloc [| g.N; g.C; g.Ho; g.Wo |]
            Pool.avgForward g true x.Data x.Offset y.Data 0

            Autograd.record y [| x |] (fun dy _ ->
                let dx = Autograd.alloc xs
                Pool.avgBackward g true dy.Data dy.Offset dx.Data 0 false
                [| dx |])

        /// Adaptive average pooling to outH×outW with PyTorch's bins [⌊iH/Ho⌋, ⌈(i+1)H/Ho⌉).
        let adaptiveAvgPool2d (outH: int) (outW: int) (x: Tensor) =
            checkRank4 "adaptiveAvgPool2d" x

            if outH < 1 || outW < 1 then
                Errors.invalidArg "adaptiveAvgPool2d" "output size" (outH, outW) "positive sizes"

            let xs = x.ShapeRef

            let g: AdaptivePool2dGeometry =
                {
                    N = xs[0]
                    C = xs[1]
                    H = xs[2]
                    W = xs[3]
                    Ho = outH
                    Wo = outW
                }

            let y = Autograd.alloc [| g.N; g.C; outH; outW |]
            Pool.adaptiveAvgForward g x.Data x.Offset y.Data 0

            Autograd.record y [| x |] (fun dy _ ->
                let dx = Autograd.alloc xs
                Pool.adaptiveAvgBackward g dy.Data dy.Offset dx.Data 0 false
                [| dx |])

        let private upsample (op: string) (bilinear: bool) (alignCorners: bool) (outH: int) (outW: int) (x: Tensor) =
            checkRank4 op x

            if outH < 1 || outW < 1 then
                Errors.invalidArg op "output size" (outH, outW) "positive sizes"

            let xs = x.ShapeRef

            let g: Upsample2dGeometry =
                {
                    N = xs[0]
                    C = xs[1]
                    H = xs[2]
                    W = xs[3]
                    Ho = outH
                    Wo = outW
                }

            let y = Autograd.alloc [| g.N; g.C; outH; outW |]

            if bilinear then
                Upsample.bilinearForward g alignCorners x.Data x.Offset y.Data 0
            else
                Upsample.nearestForward g x.Data x.Offset y.Data 0

            Autograd.record y [| x |] (fun dy _ ->
                let dx = Autograd.alloc xs

                if bilinear then
                    Upsample.bilinearBackward g alignCorners dy.Data dy.Offset dx.Data 0 false
                else
                    Upsample.nearestBackward g dy.Data dy.Offset dx.Data 0 false

                [| dx |])

        /// Nearest-neighbour resize to outH×outW (PyTorch's size= semantics).
        let upsampleNearest (outH: int) (outW: int) (x: Tensor) =
            upsample "upsampleNearest" false false outH outW x

        /// Bilinear resize to outH×outW, corners aligned or not (PyTorch semantics).
        let upsampleBilinear (alignCorners: bool) (outH: int) (outW: int) (x: Tensor) =
            upsample "upsampleBilinear" true alignCorners outH outW x
