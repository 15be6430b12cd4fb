namespace SnnSpec.Kernels

open System
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open System.Threading.Tasks
open Microsoft.FSharp.NativeInterop
open SnnSpec

/// Register-blocked FMA micro-kernels over packed panels.
module internal GemmKernels =
    /// C[12×32] ← α·Ap·Bp (+ β·C unless β = 0) over kc packed steps: Ap holds 12 values, Bp 32 per step.
    let inline k12x32
        (kc: int)
        (pa: nativeptr<float32>)
        (pb: nativeptr<float32>)
        (c: nativeptr<float32>)
        (ldc: int)
        (alpha: float32)
        (beta: float32)
        =
        let mutable c0_0 = Vector512<float32>.Zero
        let mutable c0_1 = Vector512<float32>.Zero
        let mutable c1_0 = Vector512<float32>.Zero
        let mutable c1_1 = Vector512<float32>.Zero
        let mutable c2_0 = Vector512<float32>.Zero
        let mutable c2_1 = Vector512<float32>.Zero
        let mutable c3_0 = Vector512<float32>.Zero
        let mutable c3_1 = Vector512<float32>.Zero
        let mutable c4_0 = Vector512<float32>.Zero
        let mutable c4_1 = Vector512<float32>.Zero
        let mutable c5_0 = Vector512<float32>.Zero
        let mutable c5_1 = Vector512<float32>.Zero
        let mutable c6_0 = Vector512<float32>.Zero
        let mutable c6_1 = Vector512<float32>.Zero
        let mutable c7_0 = Vector512<float32>.Zero
        let mutable c7_1 = Vector512<float32>.Zero
        let mutable c8_0 = Vector512<float32>.Zero
        let mutable c8_1 = Vector512<float32>.Zero
        let mutable c9_0 = Vector512<float32>.Zero
        let mutable c9_1 = Vector512<float32>.Zero
        let mutable c10_0 = Vector512<float32>.Zero
        let mutable c10_1 = Vector512<float32>.Zero
        let mutable c11_0 = Vector512<float32>.Zero
        let mutable c11_1 = Vector512<float32>.Zero
        let mutable pa = pa
        let mutable pb = pb

        for _ in 1..kc do
            let b0 = Vector512.Load(NativePtr.add pb 0)
            let b1 = Vector512.Load(NativePtr.add pb 16)
            let a = Vector512.Create(NativePtr.get pa 0)
            c0_0 <- Avx512F.FusedMultiplyAdd(a, b0, c0_0)
            c0_1 <- Avx512F.FusedMultiplyAdd(a, b1, c0_1)
            let a = Vector512.Create(NativePtr.get pa 1)
            c1_0 <- Avx512F.FusedMultiplyAdd(a, b0, c1_0)
            c1_1 <- Avx512F.FusedMultiplyAdd(a, b1, c1_1)
            let a = Vector512.Create(NativePtr.get pa 2)
            c2_0 <- Avx512F.FusedMultiplyAdd(a, b0, c2_0)
            c2_1 <- Avx512F.FusedMultiplyAdd(a, b1, c2_1)
            let a = Vector512.Create(NativePtr.get pa 3)
            c3_0 <- Avx512F.FusedMultiplyAdd(a, b0, c3_0)
            c3_1 <- Avx512F.FusedMultiplyAdd(a, b1, c3_1)
            let a = Vector512.Create(NativePtr.get pa 4)
            c4_0 <- Avx512F.FusedMultiplyAdd(a, b0, c4_0)
            c4_1 <- Avx512F.FusedMultiplyAdd(a, b1, c4_1)
            let a = Vector512.Create(NativePtr.get pa 5)
            c5_0 <- Avx512F.FusedMultiplyAdd(a, b0, c5_0)
            c5_1 <- Avx512F.FusedMultiplyAdd(a, b1, c5_1)
            let a = Vector512.Create(NativePtr.get pa 6)
            c6_0 <- Avx512F.FusedMultiplyAdd(a, b0, c6_0)
            c6_1 <- Avx512F.FusedMultiplyAdd(a, b1, c6_1)
            let a = Vector512.Create(NativePtr.get pa 7)
            c7_0 <- Avx512F.FusedMultiplyAdd(a, b0, c7_0)
            c7_1 <- Avx512F.FusedMultiplyAdd(a, b1, c7_1)
            let a = Vector512.Create(NativePtr.get pa 8)
            c8_0 <- Avx512F.FusedMultiplyAdd(a, b0, c8_0)
            c8_1 <- Avx512F.FusedMultiplyAdd(a, b1, c8_1)
            let a = Vector512.Create(NativePtr.get pa 9)
            c9_0 <- Avx512F.FusedMultiplyAdd(a, b0, c9_0)
            c9_1 <- Avx512F.FusedMultiplyAdd(a, b1, c9_1)
            let a = Vector512.Create(NativePtr.get pa 10)
            c10_0 <- Avx512F.FusedMultiplyAdd(a, b0, c10_0)
            c10_1 <- Avx512F.FusedMultiplyAdd(a, b1, c10_1)
            let a = Vector512.Create(NativePtr.get pa 11)
            c11_0 <- Avx512F.FusedMultiplyAdd(a, b0, c11_0)
            c11_1 <- Avx512F.FusedMultiplyAdd(a, b1, c11_1)
            pa <- NativePtr.add pa 12
            pb <- NativePtr.add pb 32

        let va = Vector512.Create alpha

        if beta = 0.0f then
            Vector512.Store(va * c0_0, NativePtr.add c (0 * ldc + 0))
            Vector512.Store(va * c0_1, NativePtr.add c (0 * ldc + 16))
            Vector512.Store(va * c1_0, NativePtr.add c (1 * ldc + 0))
            Vector512.Store(va * c1_1, NativePtr.add c (1 * ldc + 16))
            Vector512.Store(va * c2_0, NativePtr.add c (2 * ldc + 0))
            Vector512.Store(va * c2_1, NativePtr.add c (2 * ldc + 16))
            Vector512.Store(va * c3_0, NativePtr.add c (3 * ldc + 0))
            Vector512.Store(va * c3_1, NativePtr.add c (3 * ldc + 16))
            Vector512.Store(va * c4_0, NativePtr.add c (4 * ldc + 0))
            Vector512.Store(va * c4_1, NativePtr.add c (4 * ldc + 16))
            Vector512.Store(va * c5_0, NativePtr.add c (5 * ldc + 0))
            Vector512.Store(va * c5_1, NativePtr.add c (5 * ldc + 16))
            Vector512.Store(va * c6_0, NativePtr.add c (6 * ldc + 0))
            Vector512.Store(va * c6_1, NativePtr.add c (6 * ldc + 16))
            Vector512.Store(va * c7_0, NativePtr.add c (7 * ldc + 0))
            Vector512.Store(va * c7_1, NativePtr.add c (7 * ldc + 16))
            Vector512.Store(va * c8_0, NativePtr.add c (8 * ldc + 0))
            Vector512.Store(va * c8_1, NativePtr.add c (8 * ldc + 16))
            Vector512.Store(va * c9_0, NativePtr.add c (9 * ldc + 0))
            Vector512.Store(va * c9_1, NativePtr.add c (9 * ldc + 16))
            Vector512.Store(va * c10_0, NativePtr.add c (10 * ldc + 0))
            Vector512.Store(va * c10_1, NativePtr.add c (10 * ldc + 16))
            Vector512.Store(va * c11_0, NativePtr.add c (11 * ldc + 0))
            Vector512.Store(va * c11_1, NativePtr.add c (11 * ldc + 16))
        elif beta = 1.0f then
            let p = NativePtr.add c (0 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c0_0, Vector512.Load p), p)
            let p = NativePtr.add c (0 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c0_1, Vector512.Load p), p)
            let p = NativePtr.add c (1 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c1_0, Vector512.Load p), p)
            let p = NativePtr.add c (1 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c1_1, Vector512.Load p), p)
            let p = NativePtr.add c (2 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c2_0, Vector512.Load p), p)
            let p = NativePtr.add c (2 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c2_1, Vector512.Load p), p)
            let p = NativePtr.add c (3 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c3_0, Vector512.Load p), p)
            let p = NativePtr.add c (3 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c3_1, Vector512.Load p), p)
            let p = NativePtr.add c (4 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c4_0, Vector512.Load p), p)
            let p = NativePtr.add c (4 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c4_1, Vector512.Load p), p)
            let p = NativePtr.add c (5 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c5_0, Vector512.Load p), p)
            let p = NativePtr.add c (5 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c5_1, Vector512.Load p), p)
            let p = NativePtr.add c (6 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c6_0, Vector512.Load p), p)
            let p = NativePtr.add c (6 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c6_1, Vector512.Load p), p)
            let p = NativePtr.add c (7 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c7_0, Vector512.Load p), p)
            let p = NativePtr.add c (7 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c7_1, Vector512.Load p), p)
            let p = NativePtr.add c (8 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c8_0, Vector512.Load p), p)
            let p = NativePtr.add c (8 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c8_1, Vector512.Load p), p)
            let p = NativePtr.add c (9 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c9_0, Vector512.Load p), p)
            let p = NativePtr.add c (9 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c9_1, Vector512.Load p), p)
            let p = NativePtr.add c (10 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c10_0, Vector512.Load p), p)
            let p = NativePtr.add c (10 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c10_1, Vector512.Load p), p)
            let p = NativePtr.add c (11 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c11_0, Vector512.Load p), p)
            let p = NativePtr.add c (11 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c11_1, Vector512.Load p), p)
        else
            let vb = Vector512.Create beta
            let p = NativePtr.add c (0 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c0_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (0 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c0_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (1 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c1_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (1 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c1_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (2 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c2_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (2 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c2_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (3 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c3_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (3 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c3_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (4 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c4_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (4 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c4_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (5 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c5_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (5 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c5_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (6 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c6_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (6 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c6_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (7 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c7_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (7 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c7_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (8 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c8_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (8 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c8_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (9 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c9_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (9 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c9_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (10 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c10_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (10 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c10_1, vb * Vector512.Load p), p)
            let p = NativePtr.add c (11 * ldc + 0)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c11_0, vb * Vector512.Load p), p)
            let p = NativePtr.add c (11 * ldc + 16)
            Vector512.Store(Avx512F.FusedMultiplyAdd(va, c11_1, vb * Vector512.Load p), p)

    /// C[6×16] ← α·Ap·Bp (+ β·C unless β = 0) over kc packed steps: Ap holds 6 values, Bp 16 per step.
    let inline k6x16
        (kc: int)
        (pa: nativeptr<float32>)
        (pb: nativeptr<float32>)
        (c: nativeptr<float32>)
        (ldc: int)
        (alpha: float32)
        (beta: float32)
        =
        let mutable c0_0 = Vector256<float32>.Zero
        let mutable c0_1 = Vector256<float32>.Zero
        let mutable c1_0 = Vector256<float32>.Zero
        let mutable c1_1 = Vector256<float32>.Zero
        let mutable c2_0 = Vector256<float32>.Zero
        let mutable c2_1 = Vector256<float32>.Zero
        let mutable c3_0 = Vector256<float32>.Zero
        let mutable c3_1 = Vector256<float32>.Zero
        let mutable c4_0 = Vector256<float32>.Zero
        let mutable c4_1 = Vector256<float32>.Zero
        let mutable c5_0 = Vector256<float32>.Zero
        let mutable c5_1 = Vector256<float32>.Zero
        let mutable pa = pa
        let mutable pb = pb

        for _ in 1..kc do
            let b0 = Vector256.Load(NativePtr.add pb 0)
            let b1 = Vector256.Load(NativePtr.add pb 8)
            let a = Vector256.Create(NativePtr.get pa 0)
            c0_0 <- Fma.MultiplyAdd(a, b0, c0_0)
            c0_1 <- Fma.MultiplyAdd(a, b1, c0_1)
            let a = Vector256.Create(NativePtr.get pa 1)
            c1_0 <- Fma.MultiplyAdd(a, b0, c1_0)
            c1_1 <- Fma.MultiplyAdd(a, b1, c1_1)
            let a = Vector256.Create(NativePtr.get pa 2)
            c2_0 <- Fma.MultiplyAdd(a, b0, c2_0)
            c2_1 <- Fma.MultiplyAdd(a, b1, c2_1)
            let a = Vector256.Create(NativePtr.get pa 3)
            c3_0 <- Fma.MultiplyAdd(a, b0, c3_0)
            c3_1 <- Fma.MultiplyAdd(a, b1, c3_1)
            let a = Vector256.Create(NativePtr.get pa 4)
            c4_0 <- Fma.MultiplyAdd(a, b0, c4_0)
            c4_1 <- Fma.MultiplyAdd(a, b1, c4_1)
            let a = Vector256.Create(NativePtr.get pa 5)
            c5_0 <- Fma.MultiplyAdd(a, b0, c5_0)
            c5_1 <- Fma.MultiplyAdd(a, b1, c5_1)
            pa <- NativePtr.add pa 6
            pb <- NativePtr.add pb 16

        let va = Vector256.Create alpha

        if beta = 0.0f then
            Vector256.Store(va * c0_0, NativePtr.add c (0 * ldc + 0))
            Vector256.Store(va * c0_1, NativePtr.add c (0 * ldc + 8))
            Vector256.Store(va * c1_0, NativePtr.add c (1 * ldc + 0))
            Vector256.Store(va * c1_1, NativePtr.add c (1 * ldc + 8))
            Vector256.Store(va * c2_0, NativePtr.add c (2 * ldc + 0))
            Vector256.Store(va * c2_1, NativePtr.add c (2 * ldc + 8))
            Vector256.Store(va * c3_0, NativePtr.add c (3 * ldc + 0))
            Vector256.Store(va * c3_1, NativePtr.add c (3 * ldc + 8))
            Vector256.Store(va * c4_0, NativePtr.add c (4 * ldc + 0))
            Vector256.Store(va * c4_1, NativePtr.add c (4 * ldc + 8))
            Vector256.Store(va * c5_0, NativePtr.add c (5 * ldc + 0))
            Vector256.Store(va * c5_1, NativePtr.add c (5 * ldc + 8))
        elif beta = 1.0f then
            let p = NativePtr.add c (0 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c0_0, Vector256.Load p), p)
            let p = NativePtr.add c (0 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c0_1, Vector256.Load p), p)
            let p = NativePtr.add c (1 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c1_0, Vector256.Load p), p)
            let p = NativePtr.add c (1 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c1_1, Vector256.Load p), p)
            let p = NativePtr.add c (2 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c2_0, Vector256.Load p), p)
            let p = NativePtr.add c (2 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c2_1, Vector256.Load p), p)
            let p = NativePtr.add c (3 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c3_0, Vector256.Load p), p)
            let p = NativePtr.add c (3 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c3_1, Vector256.Load p), p)
            let p = NativePtr.add c (4 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c4_0, Vector256.Load p), p)
            let p = NativePtr.add c (4 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c4_1, Vector256.Load p), p)
            let p = NativePtr.add c (5 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c5_0, Vector256.Load p), p)
            let p = NativePtr.add c (5 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c5_1, Vector256.Load p), p)
        else
            let vb = Vector256.Create beta
            let p = NativePtr.add c (0 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c0_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (0 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c0_1, vb * Vector256.Load p), p)
            let p = NativePtr.add c (1 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c1_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (1 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c1_1, vb * Vector256.Load p), p)
            let p = NativePtr.add c (2 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c2_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (2 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c2_1, vb * Vector256.Load p), p)
            let p = NativePtr.add c (3 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c3_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (3 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c3_1, vb * Vector256.Load p), p)
            let p = NativePtr.add c (4 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c4_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (4 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c4_1, vb * Vector256.Load p), p)
            let p = NativePtr.add c (5 * ldc + 0)
            Vector256.Store(Fma.MultiplyAdd(va, c5_0, vb * Vector256.Load p), p)
            let p = NativePtr.add c (5 * ldc + 8)
            Vector256.Store(Fma.MultiplyAdd(va, c5_1, vb * Vector256.Load p), p)

/// Per-thread packing buffers, allocated pinned once and grown on demand so that no call faults in fresh pages.
[<Sealed; AllowNullLiteral>]
type internal GemmWorkspace() =
    [<ThreadStatic; DefaultValue>]
    static val mutable private current: GemmWorkspace

    let mutable a: float32[] = Array.Empty()
    let mutable b: float32[] = Array.Empty()
    let mutable t: float32[] = Array.Empty()

    static let grow (arr: float32[]) (need: int) =
        if arr.Length >= need + 48 then
            arr
        else
            GC.AllocateArray<float32>(need + 48, pinned = true)

    /// Start of the 64-byte aligned region of a pinned buffer.
    static member Aligned(arr: float32[]) : nativeptr<float32> =
        let p =
            NativePtr.ofNativeInt<float32>(Marshal.UnsafeAddrOfPinnedArrayElement(arr, 0))

        let mis = int (NativePtr.toNativeInt p &&& 63n) / 4
        NativePtr.add p ((16 - mis) &&& 15)

    member _.A(need: int) =
        a <- grow a need
        GemmWorkspace.Aligned a

    member _.B(need: int) =
        b <- grow b need
        GemmWorkspace.Aligned b

    member _.T(need: int) =
        t <- grow t need
        GemmWorkspace.Aligned t

    static member Get() =
        let w = GemmWorkspace.current

        if isNull w then
            let w = GemmWorkspace()
            GemmWorkspace.current <- w
            w
        else
            w

/// Blocked single-threaded and partitioned GEMM over raw pointers.
module internal GemmCore =
    open GemmKernels

    let use512 = Vector512.IsHardwareAccelerated && Avx512F.IsSupported

    let use256 =
        not use512
        && Vector256.IsHardwareAccelerated
        && Fma.IsSupported
        && Avx2.IsSupported

    /// Micro-tile rows (broadcast from packed A) and columns (vector loads from packed B) of the active path.
    let MR = if use512 then 12 else 6
    let NR = if use512 then 32 else 16
    /// Cache blocks: depth of one packed panel (balanced so k splits into equal blocks), rows of the packed
    /// A block (kept in L2) and columns of the packed B block.
    let KC = if use512 then 512 else 256
    let MC = 120
    let NC = 4096
    /// Products with m·n·k at most this use the unpacked path.
    let smallWork = 8192L
    /// Products with less work than this run on one thread.
    let parWork = 1L <<< 21
    /// Batched products with less work per matrix than this run one matrix per thread.
    let batchWork = 1L <<< 22

    /// Transposes a rows×16 block (rows ≤ 16, missing rows read as zero) at src (row stride ld) into 16
    /// stores of 16 floats at dst + q·dstStride, q ascending; with dstStride < 16 later stores overwrite the
    /// tail of earlier ones and the last store runs 16 − dstStride floats past the block.
    let inline private transpose16
        (src: nativeptr<float32>)
        (ld: int)
        (rows: int)
        (dst: nativeptr<float32>)
        (dstStride: int)
        =
        let inline row r =
            if r < rows then
                Vector512.Load(NativePtr.add src (r * ld))
            else
                Vector512<float32>.Zero

        let inline lo (x: Vector512<float32>) (y: Vector512<float32>) = Avx512F.UnpackLow(x, y)
        let inline hi (x: Vector512<float32>) (y: Vector512<float32>) = Avx512F.UnpackHigh(x, y)

        let inline lod (x: Vector512<float32>) (y: Vector512<float32>) =
            Avx512F.UnpackLow(x.AsDouble(), y.AsDouble()).AsSingle()

        let inline hid (x: Vector512<float32>) (y: Vector512<float32>) =
            Avx512F.UnpackHigh(x.AsDouble(), y.AsDouble()).AsSingle()

        let inline sh (x: Vector512<float32>) (y: Vector512<float32>) (imm: byte) = Avx512F.Shuffle4x128(x, y, imm)

        let inline st q (v: Vector512<float32>) =
            Vector512.Store(v, NativePtr.add dst (q * dstStride))

        let r0, r1, r2, r3 = row 0, row 1, row 2, row 3
        let t0, t1, t2, t3 = lo r0 r1, hi r0 r1, lo r2 r3, hi r2 r3
        let r4, r5, r6, r7 = row 4, row 5, row 6, row 7
        let t4, t5, t6, t7 = lo r4 r5, hi r4 r5, lo r6 r7, hi r6 r7
        let r8, r9, r10, r11 = row 8, row 9, row 10, row 11
        let t8, t9, t10, t11 = lo r8 r9, hi r8 r9, lo r10 r11, hi r10 r11
        let r12, r13, r14, r15 = row 12, row 13, row 14, row 15
        let t12, t13, t14, t15 = lo r12 r13, hi r12 r13, lo r14 r15, hi r14 r15
        // g(k) for k = 0..3 holds, per 128-bit lane L, rows 4k..4k+3 of column 4L + c.
        let inline quad (c: int) =
            let pick (x0: Vector512<float32>) (x1: Vector512<float32>) =
                if c % 2 = 0 then lod x0 x1 else hid x0 x1

            let g0 = if c < 2 then pick t0 t2 else pick t1 t3
            let g1 = if c < 2 then pick t4 t6 else pick t5 t7
            let g2 = if c < 2 then pick t8 t10 else pick t9 t11
            let g3 = if c < 2 then pick t12 t14 else pick t13 t15
            let v0 = sh g0 g1 0x88uy
            let v1 = sh g0 g1 0xDDuy
            let v2 = sh g2 g3 0x88uy
            let v3 = sh g2 g3 0xDDuy
            struct (sh v0 v2 0x88uy, sh v1 v3 0x88uy, sh v0 v2 0xDDuy, sh v1 v3 0xDDuy)

        let struct (c0, c4, c8, c12) = quad 0
        let struct (c1, c5, c9, c13) = quad 1
        let struct (c2, c6, c10, c14) = quad 2
        let struct (c3, c7, c11, c15) = quad 3
        st 0 c0
        st 1 c1
        st 2 c2
        st 3 c3
        st 4 c4
        st 5 c5
        st 6 c6
        st 7 c7
        st 8 c8
        st 9 c9
        st 10 c10
        st 11 c11
        st 12 c12
        st 13 c13
        st 14 c14
        st 15 c15

    /// op(A) rows [0, mc) × cols [0, kc) into MR-row panels, p-major within a panel, zero padded to MR.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let packA
        (transA: bool)
        (a: nativeptr<float32>)
        (lda: int)
        (mc: int)
        (kc: int)
        (mr: int)
        (dst: nativeptr<float32>)
        =
        let mutable ir = 0

        while ir < mc do
            let rows = min mr (mc - ir)
            let panel = NativePtr.add dst (ir * kc)

            if transA then
                for p in 0 .. kc - 1 do
                    let src = NativePtr.add a (p * lda + ir)
                    let d = NativePtr.add panel (p * mr)

                    for r in 0 .. rows - 1 do
                        NativePtr.set d r (NativePtr.get src r)

                    for r in rows .. mr - 1 do
                        NativePtr.set d r 0.0f
            elif use512 && rows = mr && mr <= 16 then
                let src = NativePtr.add a (ir * lda)
                let mutable p = 0

                while p + 16 <= kc do
                    transpose16 (NativePtr.add src p) lda mr (NativePtr.add panel (p * mr)) mr
                    p <- p + 16

                for r in 0 .. mr - 1 do
                    for q in p .. kc - 1 do
                        NativePtr.set panel (q * mr + r) (NativePtr.get src (r * lda + q))
            else
                for r in 0 .. rows - 1 do
                    let src = NativePtr.add a ((ir + r) * lda)
                    let d = NativePtr.add panel r

                    for p in 0 .. kc - 1 do
                        NativePtr.set d (p * mr) (NativePtr.get src p)

                for r in rows .. mr - 1 do
                    for p in 0 .. kc - 1 do
                        NativePtr.set panel (p * mr + r) 0.0f

            ir <- ir + mr

    /// op(B) rows [0, kc) × cols [0, nc) into NR-column panels, p-major within a panel, zero padded to NR.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let packB
        (transB: bool)
        (b: nativeptr<float32>)
        (ldb: int)
        (kc: int)
        (nc: int)
        (nr: int)
        (dst: nativeptr<float32>)
        =
        let mutable jr = 0

        while jr < nc do
            let cols = min nr (nc - jr)
            let panel = NativePtr.add dst (jr * kc)

            if transB && use512 && cols = nr && nr % 16 = 0 then
                let mutable j0 = 0

                while j0 < nr do
                    let src = NativePtr.add b ((jr + j0) * ldb)
                    let mutable p = 0

                    while p + 16 <= kc do
                        transpose16 (NativePtr.add src p) ldb 16 (NativePtr.add panel (p * nr + j0)) nr
                        p <- p + 16

                    for j in 0..15 do
                        for q in p .. kc - 1 do
                            NativePtr.set panel (q * nr + j0 + j) (NativePtr.get src (j * ldb + q))

                    j0 <- j0 + 16
            elif transB then
                for j in 0 .. cols - 1 do
                    let src = NativePtr.add b ((jr + j) * ldb)
                    let d = NativePtr.add panel j

                    for p in 0 .. kc - 1 do
                        NativePtr.set d (p * nr) (NativePtr.get src p)

                for j in cols .. nr - 1 do
                    for p in 0 .. kc - 1 do
                        NativePtr.set panel (p * nr + j) 0.0f
            elif cols = nr && use512 then
                for p in 0 .. kc - 1 do
                    let src = NativePtr.add b (p * ldb + jr)
                    let d = NativePtr.add panel (p * nr)
                    let mutable j = 0

                    while j < nr do
                        Vector512.Store(Vector512.Load(NativePtr.add src j), NativePtr.add d j)
                        j <- j + 16
            else
                for p in 0 .. kc - 1 do
                    let src = NativePtr.add b (p * ldb + jr)
                    let d = NativePtr.add panel (p * nr)

                    for j in 0 .. cols - 1 do
                        NativePtr.set d j (NativePtr.get src j)

                    for j in cols .. nr - 1 do
                        NativePtr.set d j 0.0f

            jr <- jr + nr

    /// The jr/ir loops over one packed block: C[mc×nc] ← α·Ap·Bp + β·C, edge tiles through a scratch tile.
    /// One method per micro-kernel so that tiered compilation promotes the whole loop nest (on-stack
    /// replacement) rather than a small, frequently called kernel.
    let inline private macroWith
        ([<InlineIfLambda>] kernel:
            int -> nativeptr<float32> -> nativeptr<float32> -> nativeptr<float32> -> int -> float32 -> float32 -> unit)
        (mr: int)
        (nr: int)
        (mc: int)
        (nc: int)
        (kc: int)
        (ap: nativeptr<float32>)
        (bp: nativeptr<float32>)
        (c: nativeptr<float32>)
        (ldc: int)
        (alpha: float32)
        (beta: float32)
        (tile: nativeptr<float32>)
        =
        let mutable jr = 0

        while jr < nc do
            let cols = min nr (nc - jr)
            let pb = NativePtr.add bp (jr * kc)
            let mutable ir = 0

            while ir < mc do
                let rows = min mr (mc - ir)
                let pa = NativePtr.add ap (ir * kc)
                let cTile = NativePtr.add c (ir * ldc + jr)

                if rows = mr && cols = nr then
                    kernel kc pa pb cTile ldc alpha beta
                else
                    kernel kc pa pb tile nr 1.0f 0.0f

                    for r in 0 .. rows - 1 do
                        let crow = NativePtr.add cTile (r * ldc)
                        let trow = NativePtr.add tile (r * nr)

                        if beta = 0.0f then
                            for j in 0 .. cols - 1 do
                                NativePtr.set crow j (alpha * NativePtr.get trow j)
                        else
                            for j in 0 .. cols - 1 do
                                NativePtr.set
                                    crow
                                    j
                                    (MathF.FusedMultiplyAdd(alpha, NativePtr.get trow j, beta * NativePtr.get crow j))

                ir <- ir + mr

            jr <- jr + nr

    let private macro12x32 mc nc kc ap bp c ldc alpha beta tile =
        macroWith
            (fun kc pa pb c ldc alpha beta -> k12x32 kc pa pb c ldc alpha beta)
            12
            32
            mc
            nc
            kc
            ap
            bp
            c
            ldc
            alpha
            beta
            tile

    let private macro6x16 mc nc kc ap bp c ldc alpha beta tile =
        macroWith
            (fun kc pa pb c ldc alpha beta -> k6x16 kc pa pb c ldc alpha beta)
            6
            16
            mc
            nc
            kc
            ap
            bp
            c
            ldc
            alpha
            beta
            tile

    /// Single-threaded blocked GEMM on pointers already offset to the sub-problem; k ≥ 1, alpha ≠ 0.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let serial
        (transA: bool)
        (transB: bool)
        (m: int)
        (n: int)
        (k: int)
        (alpha: float32)
        (a: nativeptr<float32>)
        (lda: int)
        (b: nativeptr<float32>)
        (ldb: int)
        (beta: float32)
        (c: nativeptr<float32>)
        (ldc: int)
        =
        let mr = MR
        let nr = NR
        let kcMax = (k + (k + KC - 1) / KC - 1) / ((k + KC - 1) / KC)
        let mcMax = MC
        let ncMax = NC
        let ws = GemmWorkspace.Get()
        let ncCap = (min ncMax n + nr - 1) / nr * nr
        let kcCap = min kcMax k
        let mcCap = (min mcMax m + mr - 1) / mr * mr
        let bp = ws.B(kcCap * ncCap)
        let ap = ws.A(mcCap * kcCap)
        let tile = ws.T(mr * nr)
        let mutable jc = 0

        while jc < n do
            let nc = min ncMax (n - jc)
            let mutable pc = 0

            while pc < k do
                let kc = min kcMax (k - pc)

                let bSrc =
                    if transB then
                        NativePtr.add b (jc * ldb + pc)
                    else
                        NativePtr.add b (pc * ldb + jc)

                packB transB bSrc ldb kc nc nr bp
                let betaEff = if pc = 0 then beta else 1.0f
                let mutable ic = 0

                while ic < m do
                    let mc = min mcMax (m - ic)

                    let aSrc =
                        if transA then
                            NativePtr.add a (pc * lda + ic)
                        else
                            NativePtr.add a (ic * lda + pc)

                    packA transA aSrc lda mc kc mr ap
                    let cBlock = NativePtr.add c (ic * ldc + jc)

                    if use512 then
                        macro12x32 mc nc kc ap bp cBlock ldc alpha betaEff tile
                    else
                        macro6x16 mc nc kc ap bp cBlock ldc alpha betaEff tile

                    ic <- ic + mc

                pc <- pc + kc

            jc <- jc + nc

    /// C ← β·C (β = 0 writes zeros without reading C).
    let scale (m: int) (n: int) (beta: float32) (c: float32[]) (cOff: int) (ldc: int) =
        for i in 0 .. m - 1 do
            let row = Span<float32>(c, cOff + i * ldc, n)

            if beta = 0.0f then
                row.Clear()
            elif beta <> 1.0f then
                for j in 0 .. n - 1 do
                    row[j] <- beta * row[j]

    /// Row-axpy GEMM without packing for small problems: C[i,:] ← α·Σ_p A[i,p]·B[p,:] + β·C[i,:].
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let small
        (transA: bool)
        (transB: bool)
        (m: int)
        (n: int)
        (k: int)
        (alpha: float32)
        (a: nativeptr<float32>)
        (lda: int)
        (b: nativeptr<float32>)
        (ldb: int)
        (beta: float32)
        (c: nativeptr<float32>)
        (ldc: int)
        =
        let ws = GemmWorkspace.Get()
        let acc = ws.T(n + 16)

        let b, ldb =
            if transB then
                let bt = ws.B(k * n)

                for p in 0 .. k - 1 do
                    for j in 0 .. n - 1 do
                        NativePtr.set bt (p * n + j) (NativePtr.get b (j * ldb + p))

                bt, n
            else
                b, ldb

        for i in 0 .. m - 1 do
            for j in 0 .. n - 1 do
                NativePtr.set acc j 0.0f

            for p in 0 .. k - 1 do
                let av =
                    if transA then
                        NativePtr.get a (p * lda + i)
                    else
                        NativePtr.get a (i * lda + p)

                let brow = NativePtr.add b (p * ldb)
                let mutable j = 0

                if use512 then
                    let va = Vector512.Create av

                    while j + 16 <= n do
                        let d = NativePtr.add acc j

                        Vector512.Store(
                            Avx512F.FusedMultiplyAdd(va, Vector512.Load(NativePtr.add brow j), Vector512.Load d),
                            d
                        )

                        j <- j + 16
                elif use256 then
                    let va = Vector256.Create av

                    while j + 8 <= n do
                        let d = NativePtr.add acc j
                        Vector256.Store(Fma.MultiplyAdd(va, Vector256.Load(NativePtr.add brow j), Vector256.Load d), d)
                        j <- j + 8

                while j < n do
                    NativePtr.set acc j (MathF.FusedMultiplyAdd(av, NativePtr.get brow j, NativePtr.get acc j))
                    j <- j + 1

            let crow = NativePtr.add c (i * ldc)

            if beta = 0.0f then
                for j in 0 .. n - 1 do
                    NativePtr.set crow j (alpha * NativePtr.get acc j)
            else
                for j in 0 .. n - 1 do
                    NativePtr.set
                        crow
                        j
                        (MathF.FusedMultiplyAdd(alpha, NativePtr.get acc j, beta * NativePtr.get crow j))


    /// Chooses the small path, or splits C into per-thread tile-aligned strips along its longer side.
    let run
        (threads: int)
        (transA: bool)
        (transB: bool)
        (m: int)
        (n: int)
        (k: int)
        (alpha: float32)
        (a: nativeptr<float32>)
        (lda: int)
        (b: nativeptr<float32>)
        (ldb: int)
        (beta: float32)
        (c: nativeptr<float32>)
        (ldc: int)
        =
        let work = int64 m * int64 n * int64 k

        if work <= smallWork || (m <= 2 && not transB) || (not use512 && not use256) then
            small transA transB m n k alpha a lda b ldb beta c ldc
        else
            let mr = MR
            let nr = NR
            let splitM = m >= n
            let tiles = if splitM then (m + mr - 1) / mr else (n + nr - 1) / nr

            let parts =
                if threads <= 1 || work < parWork then
                    1
                else
                    min threads tiles

            if parts <= 1 then
                serial transA transB m n k alpha a lda b ldb beta c ldc
            else
                let per = (tiles + parts - 1) / parts
                let a0 = NativePtr.toNativeInt a
                let b0 = NativePtr.toNativeInt b
                let c0 = NativePtr.toNativeInt c

                Parallel.For(
                    0,
                    parts,
                    ParallelOptions(MaxDegreeOfParallelism = parts),
                    fun t ->
                        let a = NativePtr.ofNativeInt<float32> a0
                        let b = NativePtr.ofNativeInt<float32> b0
                        let c = NativePtr.ofNativeInt<float32> c0

                        if splitM then
                            let i0 = t * per * mr
                            let i1 = min m ((t + 1) * per * mr)

                            if i0 < i1 then
                                let aS =
                                    if transA then
                                        NativePtr.add a i0
                                    else
                                        NativePtr.add a (i0 * lda)

                                serial
                                    transA
                                    transB
                                    (i1 - i0)
                                    n
                                    k
                                    alpha
                                    aS
                                    lda
                                    b
                                    ldb
                                    beta
                                    (NativePtr.add c (i0 * ldc))
                                    ldc
                        else
                            let j0 = t * per * nr
                            let j1 = min n ((t + 1) * per * nr)

                            if j0 < j1 then
                                let bS =
                                    if transB then
                                        NativePtr.add b (j0 * ldb)
                                    else
                                        NativePtr.add b j0

                                serial transA transB m (j1 - j0) k alpha a lda bS ldb beta (NativePtr.add c j0) ldc
                )
                |> ignore

    let check name (x: float32[]) off ld rows cols =
        if rows > 0 && cols > 0 then
            if
                off < 0
                || ld < cols
                || int64 off + int64 (rows - 1) * int64 ld + int64 cols > int64 x.Length
            then
                Errors.invalidArg
                    "Gemm.Sgemm"
                    name
                    (off, ld, x.Length)
                    (sprintf "a %d×%d block with leading dimension ≥ %d inside the array" rows cols cols)

    /// Refuses sizes, offsets and leading dimensions that would read or write outside the arrays.
    let validate transA transB m n k alpha (a: float32[]) aOff lda (b: float32[]) bOff ldb (c: float32[]) cOff ldc =
        if m < 0 || n < 0 || k < 0 then
            Errors.invalidArg "Gemm.Sgemm" "m, n, k" (m, n, k) "non-negative sizes"

        check "C (offset, ldc, length)" c cOff ldc m n

        if m > 0 && n > 0 && k > 0 && alpha <> 0.0f then
            if transA then
                check "A (offset, lda, length)" a aOff lda k m
            else
                check "A (offset, lda, length)" a aOff lda m k

            if transB then
                check "B (offset, ldb, length)" b bOff ldb n k
            else
                check "B (offset, ldb, length)" b bOff ldb k n

    let sgemm
        threads
        transA
        transB
        m
        n
        k
        alpha
        (a: float32[])
        aOff
        lda
        (b: float32[])
        bOff
        ldb
        beta
        (c: float32[])
        cOff
        ldc
        =
        validate transA transB m n k alpha a aOff lda b bOff ldb c cOff ldc

        if m > 0 && n > 0 then
            if k = 0 || alpha = 0.0f then
                scale m n beta c cOff ldc
            else

                use pa = fixed a
                use pb = fixed b
                use pc = fixed c

                run
                    threads
                    transA
                    transB
                    m
                    n
                    k
                    alpha
                    (NativePtr.add pa aOff)
                    lda
                    (NativePtr.add pb bOff)
                    ldb
                    beta
                    (NativePtr.add pc cOff)
                    ldc

/// Single-precision general matrix multiply on row-major arrays with offsets and leading dimensions:
/// C[m×n] ← α·op(A)·op(B) + β·C, where op(A) is m×k (A stored k×m when transA) and op(B) is k×n
/// (B stored n×k when transB). β = 0 overwrites C without reading it (NaNs in C do not propagate).
[<AbstractClass; Sealed>]
type Gemm =
    /// Naive triple loop, the oracle the fast kernels are tested against.
    static member Reference
        (
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            lda: int,
            b: float32[],
            bOff: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            ldc: int
        ) =
        for i in 0 .. m - 1 do
            for j in 0 .. n - 1 do
                let mutable acc = 0.0

                for p in 0 .. k - 1 do
                    let av =
                        if transA then
                            a[aOff + p * lda + i]
                        else
                            a[aOff + i * lda + p]

                    let bv =
                        if transB then
                            b[bOff + j * ldb + p]
                        else
                            b[bOff + p * ldb + j]

                    acc <- acc + float av * float bv

                let prev = if beta = 0.0f then 0.0f else beta * c[cOff + i * ldc + j]
                c[cOff + i * ldc + j] <- prev + alpha * float32 acc

    /// The fast managed kernel (see the type summary for the contract). Cache-blocked and packed, with an
    /// AVX-512 micro-kernel (AVX2/FMA and scalar fallbacks), using up to <c>Threads.Count</c> threads.
    /// k = 0 or α = 0 gives β·C without reading A or B. Results are bit-identical for every thread count.
    /// Raises SnnSpecException when a block does not fit its array or a leading dimension is too small.
    static member Sgemm
        (
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            lda: int,
            b: float32[],
            bOff: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            ldc: int
        ) =
        GemmCore.sgemm Threads.Count transA transB m n k alpha a aOff lda b bOff ldb beta c cOff ldc

    /// <c>batch</c> independent products C_i ← α·op(A_i)·op(B_i) + β·C_i, where matrix i starts at
    /// offset + i·stride in each array. Small products run one per thread across the batch, large ones
    /// one after another, each using all threads. Results equal <c>Sgemm</c> on each matrix bit for bit.
    static member SgemmBatched
        (
            batch: int,
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            strideA: int,
            lda: int,
            b: float32[],
            bOff: int,
            strideB: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            strideC: int,
            ldc: int
        ) =
        if batch < 0 then
            Errors.invalidArg "Gemm.SgemmBatched" "batch" batch "a non-negative count"

        // Offsets grow linearly with the index: the first and the last matrix bound all of them, so
        // a bad batch is refused before any C is written.
        for i in (if batch > 0 then [ 0; batch - 1 ] else []) do
            for name, off, stride in [ "A", aOff, strideA; "B", bOff, strideB; "C", cOff, strideC ] do
                let last = int64 off + int64 i * int64 stride

                if last < 0L || last > int64 Int32.MaxValue then
                    Errors.invalidArg
                        "Gemm.SgemmBatched"
                        (sprintf "%s offset of matrix %d" name i)
                        last
                        "an offset inside the array (offset + i·stride overflows or is negative)"

            GemmCore.validate
                transA
                transB
                m
                n
                k
                alpha
                a
                (aOff + i * strideA)
                lda
                b
                (bOff + i * strideB)
                ldb
                c
                (cOff + i * strideC)
                ldc

        let threads = Threads.Count
        let work = int64 m * int64 n * int64 k

        if threads > 1 && batch > 1 && work < GemmCore.batchWork then
            let chunks = min threads batch
            let per = (batch + chunks - 1) / chunks

            Parallel.For(
                0,
                chunks,
                ParallelOptions(MaxDegreeOfParallelism = chunks),
                fun t ->
                    for i in t * per .. min batch ((t + 1) * per) - 1 do
                        GemmCore.sgemm
                            1
                            transA
                            transB
                            m
                            n
                            k
                            alpha
                            a
                            (aOff + i * strideA)
                            lda
                            b
                            (bOff + i * strideB)
                            ldb
                            beta
                            c
                            (cOff + i * strideC)
                            ldc
            )
            |> ignore
        else
            for i in 0 .. batch - 1 do
                GemmCore.sgemm
                    threads
                    transA
                    transB
                    m
                    n
                    k
                    alpha
                    a
                    (aOff + i * strideA)
                    lda
                    b
                    (bOff + i * strideB)
                    ldb
                    beta
                    c
                    (cOff + i * strideC)
                    ldc
