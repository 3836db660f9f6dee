// The C side of the binding: koffi declarations for exactly the libvirt functions we call.
// A wrong signature crashes the process instead of throwing, so every declaration here is
// exercised by test/libvirt/*.test.ts. Nothing outside src/libvirt imports this file.
import koffi, { type TypeObject } from 'koffi'

export type Pointer = unknown

/** The koffi function objects, typed loosely: callers go through connection.ts only. */
export interface LibvirtFfi {
  // process-wide
  virGetVersion: KoffiFn
  virSetErrorFunc: KoffiFn
  virEventRegisterDefaultImpl: KoffiFn
  virEventRunDefaultImpl: KoffiFn
  virEventAddTimeout: KoffiFn
  virEventRemoveTimeout: KoffiFn
  // connection
  virConnectOpen: KoffiFn
  virConnectClose: KoffiFn
  virConnectIsAlive: KoffiFn
  virConnectSetKeepAlive: KoffiFn
  virConnectRegisterCloseCallback: KoffiFn
  virConnectUnregisterCloseCallback: KoffiFn
  virConnGetLastError: KoffiFn
  virConnectListAllDomains: KoffiFn
  virConnectDomainEventRegisterAny: KoffiFn
  virConnectDomainEventDeregisterAny: KoffiFn
  // domain
  virDomainLookupByName: KoffiFn
  virDomainFree: KoffiFn
  virDomainGetName: KoffiFn
  virDomainGetState: KoffiFn
  virDomainGetXMLDesc: KoffiFn
  virDomainCreate: KoffiFn
  virDomainShutdown: KoffiFn
  virDomainDestroy: KoffiFn
  virDomainReboot: KoffiFn
  virDomainScreenshot: KoffiFn
  virDomainQemuAgentCommand: KoffiFn
  // snapshots
  virDomainListAllSnapshots: KoffiFn
  virDomainSnapshotLookupByName: KoffiFn
  virDomainSnapshotCurrent: KoffiFn
  virDomainSnapshotGetName: KoffiFn
  virDomainSnapshotGetXMLDesc: KoffiFn
  virDomainSnapshotIsCurrent: KoffiFn
  virDomainSnapshotCreateXML: KoffiFn
  virDomainRevertToSnapshot: KoffiFn
  virDomainSnapshotDelete: KoffiFn
  virDomainSnapshotFree: KoffiFn
  // streams (screenshots)
  virStreamNew: KoffiFn
  virStreamRecv: KoffiFn
  virStreamFinish: KoffiFn
  virStreamAbort: KoffiFn
  virStreamFree: KoffiFn
  // libc
  free: KoffiFn
  // types and callback prototypes
  types: {
    virError: TypeObject
    LifecycleCallback: TypeObject
    CloseCallback: TypeObject
    ErrorCallback: TypeObject
    TimeoutCallback: TypeObject
  }
}

export interface KoffiFn {
  (...args: unknown[]): unknown
  async: (...args: unknown[]) => void
}

let loaded: LibvirtFfi | null = null
let loadError: Error | null = null

/** Loads libvirt.so.0 (and libvirt-qemu.so.0) once; throws a clear error when they are missing. */
export function ffi (): LibvirtFfi {
  if (loaded) return loaded
  if (loadError) throw loadError
  try {
    loaded = declare()
    return loaded
  } catch (err) {
    loadError = new Error(`cannot load libvirt (${(err as Error).message}); install it: apt-get install libvirt0`, { cause: err })
    throw loadError
  }
}

function declare (): LibvirtFfi {
  const lib = koffi.load('libvirt.so.0')
  const qemu = koffi.load('libvirt-qemu.so.0')
  const libc = koffi.load('libc.so.6')

  // Opaque handles: the binding never looks inside them.
  koffi.pointer('virConnectPtr', koffi.opaque('virConnect'))
  koffi.pointer('virDomainPtr', koffi.opaque('virDomain'))
  koffi.pointer('virDomainSnapshotPtr', koffi.opaque('virDomainSnapshot'))
  koffi.pointer('virStreamPtr', koffi.opaque('virStream'))
  const virError = koffi.struct('virError', {
    code: 'int',
    domain: 'int',
    message: 'char *',
    level: 'int',
    conn: 'void *',
    dom: 'void *',
    str1: 'char *',
    str2: 'char *',
    str3: 'char *',
    int1: 'int',
    int2: 'int',
    net: 'void *'
  })
  const free = libc.func('void free(void *ptr)')
  // Strings that libvirt allocates for us: converted to JS, then freed with free().
  koffi.disposable('HeapStr', 'char *', free)

  const LifecycleCallback = koffi.proto('int virConnectDomainEventCallback(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)')
  const CloseCallback = koffi.proto('void virConnectCloseFunc(virConnectPtr conn, int reason, void *opaque)')
  const ErrorCallback = koffi.proto('void virErrorFunc(void *userData, virError *error)')
  const TimeoutCallback = koffi.proto('void virEventTimeoutCallback(int timer, void *opaque)')

  const f = (decl: string) => lib.func(decl) as unknown as KoffiFn
  return {
    virGetVersion: f('int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)'),
    virSetErrorFunc: f('void virSetErrorFunc(void *userData, virErrorFunc *handler)'),
    virEventRegisterDefaultImpl: f('int virEventRegisterDefaultImpl(void)'),
    virEventRunDefaultImpl: f('int virEventRunDefaultImpl(void)'),
    virEventAddTimeout: f('int virEventAddTimeout(int timeout, virEventTimeoutCallback *cb, void *opaque, void *ff)'),
    virEventRemoveTimeout: f('int virEventRemoveTimeout(int timer)'),

    virConnectOpen: f('virConnectPtr virConnectOpen(const char *name)'),
    virConnectClose: f('int virConnectClose(virConnectPtr conn)'),
    virConnectIsAlive: f('int virConnectIsAlive(virConnectPtr conn)'),
    virConnectSetKeepAlive: f('int virConnectSetKeepAlive(virConnectPtr conn, int interval, unsigned int count)'),
    virConnectRegisterCloseCallback: f('int virConnectRegisterCloseCallback(virConnectPtr conn, virConnectCloseFunc *cb, void *opaque, void *freecb)'),
    virConnectUnregisterCloseCallback: f('int virConnectUnregisterCloseCallback(virConnectPtr conn, virConnectCloseFunc *cb)'),
    virConnGetLastError: f('virError *virConnGetLastError(virConnectPtr conn)'),
    virConnectListAllDomains: f('int virConnectListAllDomains(virConnectPtr conn, _Out_ void **domains, unsigned int flags)'),
    virConnectDomainEventRegisterAny: f('int virConnectDomainEventRegisterAny(virConnectPtr conn, virDomainPtr dom, int eventID, virConnectDomainEventCallback *cb, void *opaque, void *freecb)'),
    virConnectDomainEventDeregisterAny: f('int virConnectDomainEventDeregisterAny(virConnectPtr conn, int callbackID)'),

    virDomainLookupByName: f('virDomainPtr virDomainLookupByName(virConnectPtr conn, const char *name)'),
    virDomainFree: f('int virDomainFree(virDomainPtr domain)'),
    virDomainGetName: f('const char *virDomainGetName(virDomainPtr domain)'),
    virDomainGetState: f('int virDomainGetState(virDomainPtr domain, _Out_ int *state, _Out_ int *reason, unsigned int flags)'),
    virDomainGetXMLDesc: f('HeapStr virDomainGetXMLDesc(virDomainPtr domain, unsigned int flags)'),
    virDomainCreate: f('int virDomainCreate(virDomainPtr domain)'),
    virDomainShutdown: f('int virDomainShutdown(virDomainPtr domain)'),
    virDomainDestroy: f('int virDomainDestroy(virDomainPtr domain)'),
    virDomainReboot: f('int virDomainReboot(virDomainPtr domain, unsigned int flags)'),
    virDomainScreenshot: f('HeapStr virDomainScreenshot(virDomainPtr domain, virStreamPtr stream, unsigned int screen, unsigned int flags)'),
    virDomainQemuAgentCommand: qemu.func('HeapStr virDomainQemuAgentCommand(virDomainPtr domain, const char *cmd, int timeout, unsigned int flags)') as unknown as KoffiFn,

    virDomainListAllSnapshots: f('int virDomainListAllSnapshots(virDomainPtr domain, _Out_ void **snaps, unsigned int flags)'),
    virDomainSnapshotLookupByName: f('virDomainSnapshotPtr virDomainSnapshotLookupByName(virDomainPtr domain, const char *name, unsigned int flags)'),
    virDomainSnapshotCurrent: f('virDomainSnapshotPtr virDomainSnapshotCurrent(virDomainPtr domain, unsigned int flags)'),
    virDomainSnapshotGetName: f('const char *virDomainSnapshotGetName(virDomainSnapshotPtr snapshot)'),
    virDomainSnapshotGetXMLDesc: f('HeapStr virDomainSnapshotGetXMLDesc(virDomainSnapshotPtr snapshot, unsigned int flags)'),
    virDomainSnapshotIsCurrent: f('int virDomainSnapshotIsCurrent(virDomainSnapshotPtr snapshot, unsigned int flags)'),
    virDomainSnapshotCreateXML: f('virDomainSnapshotPtr virDomainSnapshotCreateXML(virDomainPtr domain, const char *xmlDesc, unsigned int flags)'),
    virDomainRevertToSnapshot: f('int virDomainRevertToSnapshot(virDomainSnapshotPtr snapshot, unsigned int flags)'),
    virDomainSnapshotDelete: f('int virDomainSnapshotDelete(virDomainSnapshotPtr snapshot, unsigned int flags)'),
    virDomainSnapshotFree: f('int virDomainSnapshotFree(virDomainSnapshotPtr snapshot)'),

    virStreamNew: f('virStreamPtr virStreamNew(virConnectPtr conn, unsigned int flags)'),
    virStreamRecv: f('int virStreamRecv(virStreamPtr st, _Out_ uint8_t *data, size_t nbytes)'),
    virStreamFinish: f('int virStreamFinish(virStreamPtr st)'),
    virStreamAbort: f('int virStreamAbort(virStreamPtr st)'),
    virStreamFree: f('int virStreamFree(virStreamPtr st)'),

    free: free as unknown as KoffiFn,
    types: { virError, LifecycleCallback, CloseCallback, ErrorCallback, TimeoutCallback }
  }
}

/** Runs a koffi function on a libuv worker thread. */
export function callAsync<T> (fn: KoffiFn, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: Error | null, result: T) => {
      if (err) reject(err)
      else resolve(result)
    })
  })
}

/** Decodes a C array of `count` pointers and frees the array itself (not the elements). */
export function takePointerArray (ffiLib: LibvirtFfi, array: Pointer, count: number): Pointer[] {
  if (count <= 0 || array === null) {
    if (array !== null) ffiLib.free(array)
    return []
  }
  const items = koffi.decode(array, koffi.array('void *', count)) as Pointer[]
  ffiLib.free(array)
  return items
}

export { koffi }
