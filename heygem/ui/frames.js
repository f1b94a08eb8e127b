// Keeps an idle studio page from drawing itself 60 times a second. Put first in the page's HTML by
// heygem.ui.FirstScript: it must wrap requestAnimationFrame before Gradio's modules take it.
//
// Gradio 6.31's status tracker times a pending event with a requestAnimationFrame loop that ends when its event
// does, and animates its loader with another. The tracker shown while the page loads leaves both running once the
// page is built: every open page asked the browser for a new frame 60 times a second for as long as it stayed
// open, about a tenth of a core in headless Chromium with nothing on the page changing. Here each chain of frames
// remembers where it began; one begun by a status tracker before the page was built gets no more frames once the
// page is there (marked by the element ``readyId``). Trackers of the page's own events begin after that and run
// as Gradio made them.
(() => {
    const readyId = '__READY_ID__';
    const askFrame = window.requestAnimationFrame.bind(window);
    let runningChain = null;  // the chain whose frame callback is running now: the frames it asks for are its own

    window.requestAnimationFrame = (callback) => {
        const pageBuilt = document.getElementById(readyId) !== null;
        let chain = runningChain;
        if (chain === null) {
            chain = {tracker: (new Error().stack || '').includes('statustracker'), beforePage: !pageBuilt};
        }
        if (chain.tracker && chain.beforePage && pageBuilt) {
            return 0;
        }
        return askFrame((time) => {
            runningChain = chain;
            try {
                callback(time);
            } finally {
                runningChain = null;
            }
        });
    };
})();
