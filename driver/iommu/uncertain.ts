/**
 * What a queue reset leaves uncertain: requests it failed may or may not have run on the
 * device. The domain table notes here what those requests touched while a reset fails them;
 * the queue recovery then puts the device back in step for exactly that.
 *
 * @module
 */

/**
 * What requests that failed during a queue reset may have changed on the device: the ranges
 * of MAP/UNMAP requests (by domain) and the endpoints of ATTACH/DETACH requests. The domain
 * table writes here while its `uncertain` field is set.
 */
export class UncertainLog {
  /** Ranges as (domain, startLo, startHi, endLo, endHi) quintuples. */
  readonly ranges: number[] = [];
  /** Endpoints as (domain of the request, endpoint) pairs. */
  readonly endpoints: number[] = [];

  /** A MAP or UNMAP of `[s, e]` in `domain` may or may not have run. */
  range(domain: number, sLo: number, sHi: number, eLo: number, eHi: number): void {
    this.ranges.push(domain, sLo, sHi, eLo, eHi);
  }

  /** An ATTACH or DETACH of `endpoint` naming `domain` may or may not have run. */
  endpoint(domain: number, endpoint: number): void {
    this.endpoints.push(domain, endpoint);
  }
}
