namespace SnnSpec

open System
open System.Collections.Generic
open System.Threading

/// Float32 buffers recycled by exact length. Training repeats the same shapes every step, so after
/// the first step every buffer is a reused one: no fresh pages, no first-touch faults, no LOH churn.
/// Small buffers are left to the GC (gen-0 allocation is cheaper than a lock).
module BufferPool =
    /// Buffers shorter than this many floats are not pooled.
    [<Literal>]
    let MinPooled = 1024

    let private buckets = Dictionary<int, Stack<float32[]>>()
    let private gate = obj ()
    let mutable private pooledFloats = 0L
    let mutable private reused = 0L
    let mutable private fresh = 0L

    /// Upper bound on the floats the pool holds (default 1 GiB of float32); beyond it returns are dropped.
    let mutable Capacity = 256L * 1024L * 1024L

    /// A buffer of exactly n floats with unspecified contents.
    let rent (n: int) : float32[] =
        if n < MinPooled then
            Array.zeroCreate n
        else
            let got =
                lock gate (fun () ->
                    match buckets.TryGetValue n with
                    | true, s when s.Count > 0 ->
                        pooledFloats <- pooledFloats - int64 n
                        reused <- reused + 1L
                        s.Pop()
                    | _ -> null)

            if isNull got then
                Interlocked.Increment(&fresh) |> ignore
                GC.AllocateUninitializedArray<float32> n
            else
                got

    /// Gives a buffer back; the caller must hold no other reference to it.
    let give (buffer: float32[]) =
        let n = buffer.Length

        if n >= MinPooled then
            lock gate (fun () ->
                if pooledFloats + int64 n <= Capacity then
                    let s =
                        match buckets.TryGetValue n with
                        | true, s -> s
                        | _ ->
                            let s = Stack()
                            buckets[n] <- s
                            s

                    s.Push buffer
                    pooledFloats <- pooledFloats + int64 n)

    /// (buffers served from the pool, buffers freshly allocated, floats currently pooled).
    let stats () =
        lock gate (fun () -> reused, fresh, pooledFloats)

    /// Drops every pooled buffer (for tests and memory-sensitive hosts).
    let clear () =
        lock gate (fun () ->
            buckets.Clear()
            pooledFloats <- 0L)

/// The memory behind one or more tensors (a tensor and its reshaped views share one Storage).
/// A Storage allocated inside a <see cref="TensorScope"/> is returned to the pool when the scope
/// ends unless it was kept; reading a released Storage raises an error naming the cause.
[<AllowNullLiteral; Sealed>]
type Storage(data: float32[]) =
    let mutable data = data

    member _.Data =
        if isNull data then
            raise (
                SnnSpecException(
                    "This tensor's memory was recycled when the TensorScope (or the valueAndGrad call) that created it ended. "
                    + "Return the tensor from the scope (Keep it, or return it as an auxiliary output of valueAndGrad) to use it afterwards."
                )
            )

        data

    member _.IsReleased = isNull data

    member internal _.Release() =
        if not (isNull data) then
            BufferPool.give data
            data <- null

/// A region whose temporary tensors go back to the buffer pool when it ends (like a dispose scope).
/// Tensors created inside are valid until Dispose; <c>Keep</c> hands a tensor's storage to the
/// enclosing scope (or to the GC when there is none). Scopes nest and are per thread.
[<Sealed; AllowNullLiteral>]
type TensorScope internal (parent: TensorScope) =
    let owned = HashSet<Storage>(HashIdentity.Reference)
    let mutable disposed = false

    [<ThreadStatic; DefaultValue>]
    static val mutable private current: TensorScope

    static member internal Current = TensorScope.current

    /// Opens a scope on this thread.
    static member Begin() =
        let s = new TensorScope(TensorScope.current)
        TensorScope.current <- s
        s

    member internal _.Parent = parent
    member internal _.Register(s: Storage) = owned.Add s |> ignore

    /// Hands a storage to the enclosing scope; it survives this scope's end.
    member internal _.KeepStorage(s: Storage) =
        if owned.Remove s && not (isNull parent) then
            parent.Register s

    interface IDisposable with
        member this.Dispose() =
            if not disposed then
                disposed <- true

                for s in owned do
                    s.Release()

                owned.Clear()

                if Object.ReferenceEquals(TensorScope.current, this) then
                    TensorScope.current <- parent

module internal StorageAlloc =
    /// A storage of n floats with unspecified contents, pooled when a scope is open.
    let uninit (n: int) =
        let scope = TensorScope.Current

        if isNull scope then
            Storage(
                if n >= BufferPool.MinPooled then
                    GC.AllocateUninitializedArray<float32> n
                else
                    Array.zeroCreate n
            )
        else
            let s = Storage(BufferPool.rent n)
            scope.Register s
            s

    /// A zero-filled storage of n floats.
    let zeros (n: int) =
        let s = uninit n

        if n >= BufferPool.MinPooled || not (isNull TensorScope.Current) then
            Array.Clear(s.Data, 0, n)

        s
