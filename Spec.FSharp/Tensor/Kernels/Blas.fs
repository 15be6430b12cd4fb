namespace SnnSpec.Kernels

open System
open System.Runtime.InteropServices
open Microsoft.FSharp.NativeInterop

/// cblas_sgemm's C signature (row/column order and transposes as CBLAS enum values).
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CblasSgemm =
    delegate of
        order: int *
        transA: int *
        transB: int *
        m: int *
        n: int *
        k: int *
        alpha: float32 *
        a: nativeint *
        lda: int *
        b: nativeint *
        ldb: int *
        beta: float32 *
        c: nativeint *
        ldc: int ->
            unit

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal OpenBlasSetThreads = delegate of threads: int -> unit

/// Optional OpenBLAS sgemm, loaded at run time and absent without error when no library is found.
/// On Debian/Ubuntu it comes from libopenblas0-pthread (/usr/lib/x86_64-linux-gnu/openblas-pthread/).
/// OpenBLAS picks its kernels by CPU; an environment variable OPENBLAS_CORETYPE (e.g. Haswell) overrides
/// that and can pin it to AVX2 on AVX-512 machines, so comparisons with the managed kernel are made
/// with OPENBLAS_CORETYPE unset.
module Blas =
    let private candidates =
        [
            "libopenblas.so.0"
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
            "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
            "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0"
            "/usr/lib64/libopenblas.so.0"
            "/usr/local/lib/libopenblas.so.0"
            "/opt/homebrew/opt/openblas/lib/libopenblas.dylib"
            "/usr/local/opt/openblas/lib/libopenblas.dylib"
            "libopenblas.dll"
            "libopenblas"
        ]

    let private loaded =
        candidates
        |> List.tryPick (fun name ->
            let mutable handle = 0n
            let mutable fn = 0n

            if NativeLibrary.TryLoad(name, &handle) then
                if NativeLibrary.TryGetExport(handle, "cblas_sgemm", &fn) then
                    Some(name, handle, fn)
                else
                    None
            else
                None)

    /// The library that was loaded, if any.
    let libraryPath: string option = loaded |> Option.map (fun (name, _, _) -> name)

    /// True when an OpenBLAS exporting cblas_sgemm was found.
    let isAvailable = loaded.IsSome

    let private sgemmFn =
        loaded
        |> Option.map (fun (_, _, fn) -> Marshal.GetDelegateForFunctionPointer<CblasSgemm> fn)

    let private setThreadsFn =
        loaded
        |> Option.bind (fun (_, handle, _) ->
            let mutable fn = 0n

            if NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", &fn) then
                Some(Marshal.GetDelegateForFunctionPointer<OpenBlasSetThreads> fn)
            else
                None)

    /// Sets OpenBLAS's thread count; returns false when the library or its setter is missing.
    let setThreads (threads: int) =
        match setThreadsFn with
        | Some f ->
            f.Invoke(max 1 threads)
            true
        | None -> false

    /// Same convention as Gemm.Sgemm (row-major arrays with offsets). Raises SnnSpecException when
    /// OpenBLAS is not available; callers check <c>isAvailable</c> first.
    let sgemm
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
        match sgemmFn with
        | None ->
            SnnSpec.Errors.fail "Blas.sgemm: OpenBLAS (libopenblas.so.0) was not found; check Blas.isAvailable first."
        | Some f ->
            if m > 0 && n > 0 then
                if
                    aOff < 0
                    || bOff < 0
                    || cOff < 0
                    || aOff > a.Length
                    || bOff > b.Length
                    || cOff >= c.Length
                then
                    SnnSpec.Errors.invalidArg "Blas.sgemm" "offsets" (aOff, bOff, cOff) "offsets inside their arrays"

                use pa = fixed a
                use pb = fixed b
                use pc = fixed c

                let ptr (p: nativeptr<float32>) off =
                    NativePtr.toNativeInt (NativePtr.add p off)

                f.Invoke(
                    101,
                    (if transA then 112 else 111),
                    (if transB then 112 else 111),
                    m,
                    n,
                    k,
                    alpha,
                    ptr pa aOff,
                    max 1 lda,
                    ptr pb bOff,
                    max 1 ldb,
                    beta,
                    ptr pc cOff,
                    max 1 ldc
                )
