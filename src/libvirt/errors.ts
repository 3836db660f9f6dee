import { ERROR_NAMES, VIR_ERR_NO_DOMAIN, VIR_ERR_NO_DOMAIN_SNAPSHOT } from './constants.ts'

/** The one error class for anything libvirt refuses: libvirt's own code, domain and message. */
export class LibvirtError extends Error {
  /** libvirt's virErrorNumber (0 when the failure was ours, e.g. not connected). */
  readonly code: number
  /** libvirt's name for the code, e.g. 'VIR_ERR_NO_DOMAIN'. */
  readonly codeName: string
  /** libvirt's virErrorDomain: which part of libvirt raised it. */
  readonly libvirtDomain: number
  /** The libvirt call that failed, e.g. 'virDomainRevertToSnapshot'. */
  readonly operation: string

  constructor (operation: string, code: number, libvirtDomain: number, message: string) {
    super(message)
    this.name = 'LibvirtError'
    this.operation = operation
    this.code = code
    this.codeName = ERROR_NAMES[code] ?? (code === 0 ? 'NOT_CONNECTED' : `VIR_ERR_${code}`)
    this.libvirtDomain = libvirtDomain
  }

  get isNoDomain (): boolean { return this.code === VIR_ERR_NO_DOMAIN }
  get isNoSnapshot (): boolean { return this.code === VIR_ERR_NO_DOMAIN_SNAPSHOT }
  /** True when the connection is gone (not open, or dropped): the operation never reached a VM. */
  get isDisconnected (): boolean { return this.code === 0 }
}

export function notConnected (operation: string, uri: string): LibvirtError {
  return new LibvirtError(operation, 0, 0, `not connected to libvirt at ${uri}`)
}
