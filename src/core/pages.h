/* pages.h - handing memory back to the system while keeping the mapping. */
#ifndef CSPRESNET_CORE_PAGES_H
#define CSPRESNET_CORE_PAGES_H

#include <stddef.h>

/* Drops the pages wholly inside [p, p + bytes) from memory (madvise MADV_DONTNEED):
 * a private anonymous page reads back as zeros afterwards, a page of a read-only
 * file mapping reads the file again. Partial pages at either end are kept. */
void pages_release(const void *p, size_t bytes);

#endif
