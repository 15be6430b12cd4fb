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

    /// The smallest pooled length in (n, 1.25·n] with a buffer waiting, or 0 (call under the lock).
    /// The bound keeps a much larger idle buffer for a request of its own size.
    let private nearestLarger (n: int) =
        let mutable best = 0

        for kv in buckets do
            if
                kv.Key > n
                && int64 kv.Key * 4L <= int64 n * 5L
                && kv.Value.Count > 0
                && (best = 0 || kv.Key < best)
            then
                best <- kv.Key

        best

    /// A buffer of at least n floats (exactly n unless a buffer of up to 1.25·n is waiting and none of
    /// n is: a larger idle buffer serves before a fresh one is allocated) with unspecified contents.
    /// Tensors address their storage by offset and element count, never by the array's length.
    let rent (n: int) : float32[] =
        if n < MinPooled then
            Array.zeroCreate n
        else
            let got =
                lock gate (fun () ->
                    let take (len: int) =
                        let s = buckets[len]
                        pooledFloats <- pooledFloats - int64 len
                        reused <- reused + 1L
                        s.Pop()

                    match buckets.TryGetValue n with
                    | true, s when s.Count > 0 -> take n
                    | _ ->
                        match nearestLarger n with
                        | 0 -> null
                        | len -> take len)

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

    let private intBuckets = Dictionary<int, Stack<int[]>>()

    /// An int32 buffer of exactly n elements with unspecified contents (e.g. max-pooling indices),
    /// pooled like float buffers and counted against the same capacity.
    let rentInts (n: int) : int[] =
        if n < MinPooled then
            Array.zeroCreate n
        else
            let got =
                lock gate (fun () ->
                    match intBuckets.TryGetValue n with
                    | true, s when s.Count > 0 ->
                        pooledFloats <- pooledFloats - int64 n
                        reused <- reused + 1L
                        s.Pop()
                    | _ -> null)

            if isNull got then
                Interlocked.Increment(&fresh) |> ignore
                GC.AllocateUninitializedArray<int> n
            else
                got

    /// Gives an int32 buffer back; the caller must hold no other reference to it.
    let giveInts (buffer: int[]) =
        let n = buffer.Length

        if n >= MinPooled then
            lock gate (fun () ->
                if pooledFloats + int64 n <= Capacity then
                    let s =
                        match intBuckets.TryGetValue n with
                        | true, s -> s
                        | _ ->
                            let s = Stack()
                            intBuckets[n] <- s
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
            intBuckets.Clear()
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

    /// An int32 buffer that lives and is recycled with this storage (StorageAlloc.ints).
    member val internal Companion: int[] = null with get, set

    member internal this.Release() =
        if not (isNull data) then
            BufferPool.give data
            data <- null

            if not (isNull this.Companion) then
                BufferPool.giveInts this.Companion
                this.Companion <- null

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

    /// True when this scope (not an enclosing one) owns the storage.
    member internal _.Owns(s: Storage) = owned.Contains s

    /// Returns an owned storage to the pool now; false when this scope does not own it.
    member internal _.ReleaseOwned(s: Storage) =
        if owned.Remove s then
            s.Release()
            true
        else
            false

    /// Hands every storage this scope owns to the enclosing scope (to the GC when there is none).
    member internal _.KeepAll() =
        if not (isNull parent) then
            for s in owned do
                parent.Register s

        owned.Clear()

    /// Returns a storage to the pool before its scope ends, when this thread's current scope or an
    /// enclosing one owns it; the caller guarantees that nothing reads it again. Storages owned by
    /// no scope are left to the GC. True when released.
    static member internal ReleaseEarly(s: Storage) =
        let mutable sc = TensorScope.current
        let mutable released = false

        while not released && not (isNull sc) do
            if sc.ReleaseOwned s then
                released <- true
            else
                sc <- sc.Parent

        released

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

    /// An int32 buffer of n elements with unspecified contents that lives until the current scope
    /// ends (then it is recycled), or a GC array when no scope is open.
    let ints (n: int) : int[] =
        let scope = TensorScope.Current

        if isNull scope || n < BufferPool.MinPooled then
            Array.zeroCreate n
        else
            let a = BufferPool.rentInts n
            let holder = Storage(Array.Empty<float32>())
            holder.Companion <- a
            scope.Register holder
            a
