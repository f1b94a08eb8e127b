"""Every word the studio shows, in English and Simplified Chinese.

Fixed labels go to Gradio's I18n (translated in the browser, by its language); text made while the studio
runs (progress, tables, errors) is picked here by the request's Accept-Language, which the browser sets from
the same preference.
"""
from __future__ import annotations

from collections.abc import Iterable

EN: dict[str, str] = {
    "title": "# HeyGem lip-sync studio",
    "tab_single": "Single",
    "tab_batch": "Batch",
    "tab_history": "History",
    "tab_logs": "Logs",
    "speech": "Speech (audio, or a video whose sound to use)",
    "picture": "Presenter: a video or a photo of a face",
    "preview_video": "Preview",
    "preview_photo": "Preview",
    "options": "Options",
    "engine": "Engine",
    "engine_info": "auto: Wav2Lip when a checkpoint is installed, else the built-in engine",
    "engine_info_no_wav2lip": (
        "auto: the built-in engine. wav2lip is not offered: no checkpoint is installed. Put wav2lip_gan.pth from "
        "the Wav2Lip project at checkpoints/wav2lip_gan.pth and restart the studio."
    ),
    "face": "Face",
    "face_info": "largest, or a face number counted from the left (0 = leftmost)",
    "length": "When the speech is longer than the video",
    "quality": "Video quality (CRF, lower is better)",
    "still": "Keep a photo still",
    "still_info": "built-in engine: only the mouth moves (by default a photo blinks and its head moves a little)",
    "mouth": "Mouth shapes (built-in engine)",
    "mouth_info": ("auto: the presenter's own filmed mouths where their video is 5 s or more and speaks, "
                   "else key mouths"),
    "choice_mouth_auto": "auto",
    "choice_mouth_footage": "their own filmed mouths",
    "choice_mouth_phones": "key mouths",
    "choice_mouth_loudness": "key mouths, by loudness only",
    "generate": "Generate",
    "cancel": "Cancel",
    "result": "Result",
    "download": "Download",
    "videos": "Presenters: videos or photos (select many)",
    "start_batch": "Start batch",
    "cancel_batch": "Cancel batch",
    "zip": "All finished results (ZIP)",
    "zip_count": "{count} video(s)",
    "batch_results": "Finished videos, as each one is done",
    "refresh": "Refresh",
    "pick_result": "Result to play",
    "delete": "Delete this result",
    "log_tail": "This studio's log (newest first; its file also keeps DEBUG detail)",
    "advice": (
        "**Tips.** Keep single videos under 5 minutes: longer ones work but need more memory and time. "
        "Speech: wav, mp3, m4a, flac, ogg, aiff, or any video with sound. Presenters: mp4, mov, mkv, avi, webm, "
        "or a photo (jpg, png, webp) with a clearly visible face. Frames without a face are kept as they are."
    ),
    # Text made at run time.
    "engine_wav2lip": "Engine: **Wav2Lip** (`{checkpoint}`) on {device}.",
    "engine_builtin": (
        "Engine: **built-in** (no weights needed) on {device}. For the neural Wav2Lip engine, put "
        "`wav2lip_gan.pth` (or `wav2lip.pth`) from the Wav2Lip project into the `checkpoints/` folder and restart "
        "(its weights are for non-commercial use only)."
    ),
    "queue_line": " Jobs waiting or running: {pending}.",
    "workers_line": " Ray workers: {count}, {busy} busy, {done} jobs done ({where}).",
    "sentence_gap": " ",  # between two sentences on one line
    "need_speech": "Add a speech recording first.",
    "need_picture": "Add a video or photo of the presenter, or pick one from the library, first.",
    "need_videos": "Add one or more videos or photos, or pick presenters from the library, first.",
    "bad_option": "Option not accepted: {reason}",
    "queued_behind": "Queued: {ahead} jobs ahead.",
    "queued_next": "Queued: next in line.",
    "queued_one_ahead": "Queued: one job ahead.",
    "state_queued": "queued",
    "state_running": "running",
    "state_succeeded": "done",
    "state_failed": "failed",
    "state_cancelled": "cancelled",
    "stage_starting": "starting",
    "stage_audio": "reading the speech",
    "stage_probe": "reading the video",
    "stage_probe_photo": "reading the photo",
    "stage_study": "studying the presenter",
    "stage_study_photo": "studying the face in the photo",
    "stage_phones": "recognising the speech sounds",
    "stage_lip-sync": "lip-syncing",
    "stage_encode": "writing the video",
    "stage_done": "done",
    "stage_cancelling": "cancelling…",
    "bad_picture": "{name} is not a video or photo HeyGem can read. Give a video (mp4, mov, mkv, webm, avi) or a photo (jpg, png, webp).",
    "picture_is_sound": "{name} holds only sound: the presenter must be a video or photo of a face.",
    "bad_speech": "{name} is not a sound or video file HeyGem can read. Give wav, mp3, m4a, flac, ogg, aiff, or a video with sound.",
    "speech_silent": "{name}: the speech file has no sound.",
    "no_face_looked": (
        "{name}: no face found in the {frames} frames looked at. Give a video where the face is clearly visible."
    ),
    "no_face_photo": "{name}: no face found in the photo. Give a photo where the face is clearly visible.",
    "blocked": "Cannot start yet:",
    "the_speech": "{name} (the speech)",
    "starts_in": "Starts in about {wait}.",
    "starts_in_short": "starts in about {wait}",
    "batch_waiting": "Whole batch: starts in about {wait}, done in about {left}",
    "stopped_while": "{state} while {stage}",
    "col_video": "Video",
    "col_state": "State",
    "col_progress": "Progress",
    "col_detail": "Details",
    "col_when": "Finished",
    "col_audio": "Speech",
    "col_engine": "Engine",
    "col_time": "Time",
    "running_now": "Now working on: **{name}**",
    "batch_summary": "{done} of {total} finished ({failed} failed, {cancelled} cancelled).",
    "batch_idle": "Upload one speech and several videos, or pick presenters from the library, then press Start batch.",
    "no_history": "No jobs yet.",
    "deleted": "Deleted {name}.",
    "took": "took {seconds:.1f} s",
    "no_log": "No log yet.",
    # The Presenters tab and the library pickers.
    "tab_presenters": "Presenters",
    "presenter_file": "A video or photo of the presenter's face",
    "presenter_name": "Name",
    "presenter_name_info": "How the presenter is listed and picked (the file's name when left empty)",
    "add_presenter": "Add",
    "presenter_pick": "Presenter to rename or delete",
    "presenter_new_name": "New name",
    "rename_presenter": "Rename",
    "delete_presenter": "Delete presenter",
    "really_delete": "Really delete {name}?",
    "confirm_delete": "Click “Really delete {name}?” to delete {name}, or pick another presenter to keep it.",
    "presenters_help": (
        "Add a presenter once: HeyGem finds the face on every frame and studies it in the background, so each "
        "later job with this presenter starts straight at lip-syncing. Pick presenters in Single and Batch."
    ),
    "single_presenter": "Or a presenter from the library",
    "single_presenter_info": "Instead of uploading: a presenter added in the Presenters tab",
    "batch_presenters": "Presenters from the library (pick many)",
    "batch_presenters_info": "Each picked presenter is one more job, beside the uploaded videos",
    # Text made at run time about presenters.
    "no_presenters": "No presenters yet. Add a video or photo above.",
    "col_face": "Face",
    "col_name": "Name",
    "col_length": "Length",
    "col_size": "Resolution",
    "col_faces": "Face found",
    "photo": "photo",
    "seconds": "{seconds:.1f} s",
    "faces_of_frames": "{found} of {frames} frames",
    "faces_in_photo": "yes",
    "faces_pending": "not yet known",
    "presenter_state_preparing": "preparing",
    "presenter_state_ready": "ready",
    "presenter_state_failed": "failed",
    "presenter_stage_queued": "waiting for the worker",
    "presenter_stage_starting": "starting",
    "presenter_stage_faces": "finding the face",
    "presenter_stage_study": "studying the presenter",
    "choice_preparing": "{name} (preparing)",
    "need_presenter_file": "Add a video or photo of the presenter first.",
    "presenter_added": "Added {name}; it is being prepared.",
    "presenter_renamed": "Renamed to {name}.",
    "presenter_deleted": "Deleted {name}.",
    "presenter_gone": "That presenter is no longer in the library.",
    "need_presenter_pick": "Pick a presenter first.",
    "need_presenter_name": "Give a name first.",
    "picture_and_presenter": (
        "Both a video upload and a presenter from the library are given: remove the upload or clear the "
        "presenter, so it is clear which one to use."
    ),
    # Time and progress of running jobs and batches.
    "percent": "{percent:.0f}%",
    "elapsed_left": "{elapsed} elapsed · about {left} left",
    "elapsed_estimating": "{elapsed} elapsed · estimating…",
    "batch_progress": "Whole batch: {percent:.0f}% · {timing}",
    # History grouped by batch.
    "history_batch": "{when} · speech {audio} · {videos} video(s)",
    "history_zip": "ZIP of the finished results",
    # Option values (the stored values stay auto, largest, pingpong ...; these are what the page shows).
    "choice_engine_auto": "auto",
    "choice_engine_wav2lip": "wav2lip",
    "choice_engine_builtin": "builtin",
    "choice_face_largest": "largest",
    "choice_length_pingpong": "ping-pong (forward, then backward)",
    "choice_length_loop": "loop (from the start again)",
    # Where the engine runs, and what it was (a job's engine line).
    "device_cpu": "CPU",
    "device_gpu": "GPU",
    "engine_run_wav2lip": "Wav2Lip ({checkpoint} on {device}, {precision}, batches of {batch})",
    "engine_run_builtin": "built-in: own-footage mouth morph, {keys} key mouths, driven by {drive}",
    "engine_run_builtin_plain": "built-in: own-footage mouth morph",
    "engine_run_builtin_footage": "built-in: the presenter's own mouths, chosen from {frames} frames of their footage by {drive}",
    "engine_run_builtin_photo": (
        "built-in, photo path: a synthesised mouth opening (simpler: there is no open mouth of the presenter's own "
        "to reuse), driven by {drive}"
    ),
    "engine_run_motion_alive": "{line}; blinks and a slow head motion added",
    "engine_run_motion_still": "{line}; kept still but for the mouth",
    "engine_run_with_fallbacks": "{line}; {fallbacks}",
    "engine_run_fallback_separator": "; ",
    "engine_run_fallback_made_spread": "the spread mouth (\"ee\") made from the presenter's other mouths",
    "engine_run_fallback_made_rounded": "the rounded mouth (\"oo\") made from the presenter's other mouths",
    "engine_run_fallback_torch_runtime": "on PyTorch: the faster ncnn path was not available (the log says why)",
    "engine_run_fallback_footage_photo": "key mouths rather than the presenter's own footage: a photo has none to choose from",
    "engine_run_fallback_footage_short": "key mouths rather than the presenter's own footage: under 5 s of it shows the face",
    "engine_run_fallback_footage_still": "key mouths rather than the presenter's own footage: the mouth hardly opens in it",
    "engine_run_fallback_footage_none": "key mouths rather than the presenter's own footage: it could not be studied",
    "engine_run_fallback_footage_no_speech": "key mouths rather than the presenter's own footage: it has no speech of their own to choose by",
    "engine_run_fallback_footage_unmatched": "key mouths rather than the presenter's own footage: its sound does not follow the mouth (a voice-over, a dub or music?)",
    "engine_run_fallback_footage_resynced": "the presenter's footage has its sound out of step with its picture: its mouths were chosen by the sounds they were making, to keep time with this speech",
    "precision_fp16": "half precision",
    "precision_int8": "8-bit integers",
    "precision_fp32": "full precision",
    "drive_speech sounds": "the speech sounds",
    "drive_loudness": "loudness",
    # Why a job failed (heygem.errors codes), with the file's name and the numbers.
    "reason_missing": "{file}: the file is missing.",
    "reason_empty": "{file} is empty (0 bytes).",
    "reason_unreadable": "{file} is not a video, photo or sound file HeyGem can read.",
    "reason_photo_heic": (
        "{file} is a HEIC photo (as iPhones take them), which HeyGem cannot read yet. Save it as JPEG first (on an "
        "iPhone: Settings, Camera, Formats, Most Compatible; or share it as JPEG)."
    ),
    "reason_playlist": (
        "{file} is a playlist or list of other files ({kind}), not a recording; HeyGem reads only the file it is "
        "given, never the files a list names. Give the video, photo or sound file itself."
    ),
    "reason_bad_video": "{file}: the video has no usable length, frame rate or picture size.",
    "reason_no_sound": "{file} has no sound: the speech must be a recording or a video with sound.",
    "reason_no_picture": "{file} holds only sound: the presenter must be a video or photo of a face.",
    "reason_no_frames": "{file}: no frame of the video could be decoded; the file may be damaged.",
    "reason_no_face": "{file}: no face found in any of its {frames} frames. Give a video or photo where the face is clearly visible.",
    "reason_no_face_number": "{file}: face number {face} (counted from 0, left to right) is not in any of its {frames} frames.",
    "reason_cut_short": (
        "{file}: only {decoded} of the {promised} frames its header promises could be decoded; the file is probably "
        "cut short (an interrupted upload or copy). Give the complete file."
    ),
    "reason_speech_too_short": "{file}: the speech is only {seconds} s long.",
    "reason_speech_too_long": "{file}: the speech is {length} long; the limit is {limit} (raise it with {option} or {env}).",
    "reason_speech_over_limit": "{file}: the speech runs past the limit of {limit} (raise it with {option} or {env}).",
    "reason_video_too_long": (
        "{file}: the video is {length} long; the limit is {limit} (raise it with {option} or {env}). Only as much "
        "of the video as the speech lasts is used, so a shorter cut will do."
    ),
    "reason_picture_too_large": (
        "{file}: the video is {width}×{height}; the limit is {limit} pixels on the longer side (raise it with "
        "{option} or {env}), or scale it down first."
    ),
    "reason_photo_too_large": (
        "{file}: the photo is {width}×{height} pixels ({megapixels} megapixels); HeyGem takes photos of up to "
        "{limit_megapixels} megapixels. Scale it down first."
    ),
    "reason_queue_full": (
        "The queue already holds {pending} unfinished jobs, presenters waiting to be prepared included; the limit is "
        "{limit} (raise it with {option} or {env}), or wait for some to finish."
    ),
    "reason_disk_full_job": (
        "{file}: the disk filled while its result was being written ({free_gb} GB free now). Free some space, e.g. "
        "delete old results in History, and submit it again."
    ),
    "reason_disk_full": (
        "{file}: not stored: the studio's disk has {free_gb} GB free, and the studio keeps {limit} GB free for the "
        "results of the jobs already queued (lower it with {option} or {env}). Free some space, e.g. delete old "
        "results in History."
    ),
    "hours_minutes": "{hours} h {minutes:02d} min",
    "minutes_seconds": "{minutes} min {seconds:02d} s",
    "minutes_only": "{minutes} min",
    "seconds_only": "{seconds} s",
    "reason_interrupted": "{file}: the program stopped while working on this job {attempts} times; it was not tried again.",
    "reason_internal": "{file}: internal error; the Logs tab has the details.",
    "on_worker": "worker {number} on {host} ({device})",
    "reason_worker_lost": "{file}: the worker running this job stopped {attempts} times; it was not tried again.",
    "reason_unexpected": "{file}: unexpected error; the Logs tab has the details.",
    "reason_unknown_presenter": "There is no presenter with the id {file}.",
    "reason_name_too_long": "A presenter's name has at most {limit} characters; this one has {chars}.",
    "reason_presenter_failed": "The presenter {name} could not be prepared; add it again with another file.",
    # What a result says about its video (heygem.errors.CodedText codes).
    "note_cut_short": (
        "Cut short: {file} holds only {decoded} of the {promised} frames its header promises; its last {seconds} s "
        "are missing, so the result continues from the frames there are."
    ),
    "note_turned": "The face was found with the picture turned {turn}°: it was lip-synced upright and turned back.",
    "note_faces_missing": "{missing} of {frames} frames had no face and were left as they were.",
    "note_left_unchanged": (
        "Left unchanged: no face in {missing} of {frames} frames; only the other {synced} were lip-synced. Give a "
        "video where the face is clearly visible."
    ),
    "note_scaled_down": "{file} is {width}×{height}; scaled down to {new_width}×{new_height} (the picture-side limit).",
    "note_rate_lowered": "{file} runs at {fps} fps; read and made at {new_fps} fps, the most HeyGem makes.",
    "note_rate_raised": "{file} runs at {fps} fps, too slow for a mouth to speak; made at {new_fps} fps, its frames "
                        "repeated.",
    "note_speech_silent": "{file} is silent throughout, so the mouth stays closed (of a file with several sound "
                          "tracks, the one a player plays is used: the one marked default, else the first).",
    "note_speech_raised": "{file} is a quiet recording; its sounds were read {db} dB louder so that the mouth follows "
                          "all of them (the result keeps it as recorded).",
    "note_hdr_converted": "{file} is an HDR video ({hdr}); its colours were turned into standard range (BT.709), as "
                          "an ordinary screen shows them, and the result is in standard range.",
    "note_sound_early": "{file}: its sound comes {ms} ms before the mouth that makes it (recorded out of step with the picture); its jobs choose its mouths by the sounds they were making.",
    "note_sound_late": "{file}: its sound comes {ms} ms after the mouth that makes it (recorded out of step with the picture); its jobs choose its mouths by the sounds they were making.",
    # The Live tab (labels), then the words its script shows while a session runs (heygem/ui/live.js: plain
    # {name} fields only, filled in the browser; reason_live_* by the server's error codes, heygem.live.sessions).
    "tab_live": "Live",
    "live_help": (
        "Pick a ready presenter of the library and press **Start**: the presenter plays below and says what you give "
        "it, a speech file or your microphone, its mouth following the sound. **Stop** ends the session; closing the "
        "page ends it too. Each session keeps about half a CPU core busy."
    ),
    "live_presenter": "Presenter (the ready ones of the library)",
    "live_presenter_info": "Add presenters in the Presenters tab; each is offered here once it is ready",
    "live_start": "Start",
    "live_stop": "Stop",
    "live_mic": "Use microphone: the presenter says what it hears",
    "live_speech": "Speech to say (a sound file, or a video whose sound to use)",
    "live_interrupt": "Interrupt: say it at once, instead of after what is being said",
    "live_speak": "Speak this file",
    "live_hush": "Stop speaking",
    "live_idle": "Not live. Pick a presenter and press Start.",
    "live_starting": "Bringing {name} live… (loading the footage takes a few seconds)",
    "live_connecting": "Connecting the stream…",
    "live_state_line": "{name}: {state}",
    "live_state_waiting": "connecting",
    "live_state_idle": "live, resting",
    "live_state_speaking": "live, speaking",
    "live_state_ended": "ended",
    "live_sent": "{count} frames sent",
    "live_queued": "{seconds} s of speech still to say",
    "live_fig_separator": " · ",
    "live_fig_rate": "{rate} fps",
    "live_fig_late": "{count} late",
    "live_fig_dropped": "{count} dropped",
    "live_fig_latency": "latency {ms} ms",
    "live_fig_offset": "A/V offset {ms} ms",
    "live_fig_cpu": "CPU {percent}%",
    "live_fig_size": "{width}×{height}",
    "live_fig_degraded": "picture made smaller to keep up",
    "live_saying": "Saying {file} ({seconds} s).",
    "live_saying_after": "{file} ({seconds} s) is queued: it is said after what is being said now.",
    "live_saying_instead": "Saying {file} ({seconds} s) instead of what was being said.",
    "live_hushed": "Stopped speaking.",
    "live_ended": "The live session has ended.",
    "live_need_presenter": "Pick a ready presenter first.",
    "live_need_session": "Start a live session first.",
    "live_need_speech": "Choose a speech file first, and wait until it is uploaded.",
    "live_mic_on": "Microphone on: the presenter says what it hears.",
    "live_mic_off": "Microphone off.",
    "live_mic_next": "The microphone is used once the session is live.",
    "live_mic_denied": "The browser did not allow the microphone.",
    "live_mic_missing": "No microphone was found.",
    "live_mic_insecure": (
        "The browser offers the microphone only to a page opened over https or on this machine (localhost)."
    ),
    "live_mic_failed": "The microphone could not be used.",
    "live_muted": "The browser started the stream without sound: click the picture to hear it.",
    "live_no_webrtc": "This browser cannot receive a live stream (it has no WebRTC).",
    "live_connection_failed": "The stream's connection to the studio failed; the session was ended.",
    "live_unreachable": "The studio could not be reached.",
    "live_request_failed": "The studio answered {status}: {error}",
    "reason_live_unavailable": (
        "Live sessions need aiortc, which is not installed: install it with ./start_app.sh --live (or pip install -r "
        "{requirements}) and restart the studio."
    ),
    "reason_live_full": (
        "{limit} live session(s) already running, the most this studio runs at once (raise it with {option} or "
        "{env}); end one first."
    ),
    "reason_live_no_presenter": "That presenter is no longer in the library.",
    "reason_live_presenter_not_ready": "{name} is not ready ({state}); only a ready presenter can go live.",
    "reason_live_no_study": "{name} has no face whose mouth could be studied, so it cannot go live.",
    "reason_live_unknown": (
        "The live session has ended on the studio's side (its stream went away, or nobody watched it for too long)."
    ),
    "reason_live_bad_audio": "{file}: no speech could be read from it (give a sound file, or a video with sound).",
    "reason_live_empty_speech": "{file} holds no sound.",
    "reason_live_speech_too_long": "{file} is longer than {limit} min, the longest speech (raise it with {option} or {env}).",
    "reason_live_queue_full": "{file} was not queued: {waiting_minutes} min of speech already wait to be said, and a live session holds at most {limit} min (raise it with {option} or {env}). Wait until some of it is said, or interrupt it.",
}

ZH: dict[str, str] = {
    "title": "# HeyGem 口型同步工作室",
    "tab_single": "单个",
    "tab_batch": "批量",
    "tab_history": "历史",
    "tab_logs": "日志",
    "speech": "语音（音频，或带声音的视频）",
    "picture": "主播：人脸视频或照片",
    "preview_video": "预览",
    "preview_photo": "预览",
    "options": "选项",
    "engine": "引擎",
    "engine_info": "自动：已安装检查点时用 Wav2Lip，否则用内置引擎",
    "engine_info_no_wav2lip": (
        "自动：使用内置引擎。未提供 Wav2Lip：没有安装检查点。请把 Wav2Lip 项目的 wav2lip_gan.pth 放到 "
        "checkpoints/wav2lip_gan.pth，然后重新启动工作室。"
    ),
    "face": "人脸",
    "face_info": "最大的人脸，或从左数的人脸编号（0 = 最左）",
    "length": "语音比视频长时",
    "quality": "视频质量（数值越小，画质越好）",
    "still": "照片保持静止",
    "still_info": "内置引擎：只有嘴在动（默认照片会眨眼，头部也会轻微摆动）",
    "mouth": "口型（内置引擎）",
    "mouth_info": "自动：主播视频有 5 秒以上且带本人语音时，用其画面中本人的真实口型，否则用关键口型",
    "choice_mouth_auto": "自动",
    "choice_mouth_footage": "本人画面中的真实口型",
    "choice_mouth_phones": "关键口型",
    "choice_mouth_loudness": "关键口型，仅按响度",
    "generate": "生成",
    "cancel": "取消",
    "result": "结果",
    "download": "下载",
    "videos": "主播：视频或照片（可多选）",
    "start_batch": "开始批量",
    "cancel_batch": "取消批量",
    "zip": "全部已完成结果（ZIP）",
    "zip_count": "{count} 个视频",
    "batch_results": "已完成的视频（逐个出现）",
    "refresh": "刷新",
    "pick_result": "要播放的结果",
    "delete": "删除此结果",
    "log_tail": "本工作室的日志（最新的在最上；日志文件中另有更详细的调试记录）",
    "advice": (
        "**提示。** 单个视频请保持在 5 分钟以内：更长的视频也能处理，但需要更多内存和时间。"
        "语音：wav、mp3、m4a、flac、ogg、aiff，或任何带声音的视频。主播：mp4、mov、mkv、avi、webm，"
        "或人脸清晰可见的照片（jpg、png、webp）。没有人脸的画面保持原样。"
    ),
    "engine_wav2lip": "引擎：**Wav2Lip**（`{checkpoint}`），运行于 {device}。",
    "engine_builtin": (
        "引擎：**内置**（无需权重），运行于 {device}。如需神经网络 Wav2Lip 引擎，请把 Wav2Lip 项目的 "
        "`wav2lip_gan.pth`（或 `wav2lip.pth`）放入 `checkpoints/` 文件夹并重新启动（其权重仅限非商业用途）。"
    ),
    "queue_line": "等待或运行中的任务：{pending} 个。",  # no space after a Chinese full stop
    "sentence_gap": "",
    "workers_line": "Ray 工作进程：{count} 个，{busy} 个忙碌，已完成 {done} 个任务（{where}）。",
    "need_speech": "请先添加语音。",
    "need_picture": "请先添加主播的视频或照片，或从主播库中选择一个。",
    "need_videos": "请先添加一个或多个视频或照片，或从主播库中选择主播。",
    "bad_option": "选项无效：{reason}",
    "queued_behind": "排队中：前面还有 {ahead} 个任务。",
    "queued_next": "排队中：下一个就轮到它。",
    "queued_one_ahead": "排队中：前面还有 1 个任务。",
    "state_queued": "排队中",
    "state_running": "运行中",
    "state_succeeded": "完成",
    "state_failed": "失败",
    "state_cancelled": "已取消",
    "stage_starting": "启动中",
    "stage_audio": "读取语音",
    "stage_probe": "读取视频",
    "stage_probe_photo": "读取照片",
    "stage_study": "分析主播",
    "stage_study_photo": "分析照片中的人脸",
    "stage_phones": "识别语音中的音素",
    "stage_lip-sync": "口型同步中",
    "stage_encode": "写入视频",
    "stage_done": "完成",
    "stage_cancelling": "正在取消…",
    "bad_picture": "{name} 不是 HeyGem 能读取的视频或照片。请提供视频（mp4、mov、mkv、webm、avi）或照片（jpg、png、webp）。",
    "picture_is_sound": "{name} 只有声音：主播必须是人脸视频或照片。",
    "bad_speech": "{name} 不是 HeyGem 能读取的音频或视频文件。请提供 wav、mp3、m4a、flac、ogg、aiff，或带声音的视频。",
    "speech_silent": "{name}：语音文件没有声音。",
    "no_face_looked": "{name}：查看的 {frames} 帧中都没有找到人脸。请提供人脸清晰可见的视频。",
    "no_face_photo": "{name}：照片中没有找到人脸。请提供人脸清晰可见的照片。",
    "blocked": "暂时无法开始：",
    "the_speech": "{name}（语音）",
    "starts_in": "约 {wait} 后开始。",
    "starts_in_short": "约 {wait} 后开始",
    "batch_waiting": "整批：约 {wait} 后开始，约 {left} 后全部完成",
    "stopped_while": "{state}（停在：{stage}）",
    "col_video": "视频",
    "col_state": "状态",
    "col_progress": "进度",
    "col_detail": "详情",
    "col_when": "完成时间",
    "col_audio": "语音",
    "col_engine": "引擎",
    "col_time": "用时",
    "running_now": "正在处理：**{name}**",
    "batch_summary": "已完成 {done} / {total}（失败 {failed}，取消 {cancelled}）。",
    "batch_idle": "上传一段语音和多个视频，或从主播库中选择主播，然后点击“开始批量”。",
    "no_history": "还没有任务。",
    "deleted": "已删除 {name}。",
    "took": "用时 {seconds:.1f} 秒",
    "no_log": "还没有日志。",
    "tab_presenters": "主播库",
    "presenter_file": "主播的人脸视频或照片",
    "presenter_name": "名称",
    "presenter_name_info": "主播在列表和选择框中显示的名称（留空则用文件名）",
    "add_presenter": "添加",
    "presenter_pick": "要改名或删除的主播",
    "presenter_new_name": "新名称",
    "rename_presenter": "改名",
    "delete_presenter": "删除主播",
    "really_delete": "确定删除 {name}？",
    "confirm_delete": "再点一次“确定删除 {name}？”即删除 {name}；选择其他主播则保留。",
    "presenters_help": (
        "主播只需添加一次：HeyGem 会在后台找出每一帧的人脸并完成分析，之后用这个主播的任务会直接从口型同步开始。"
        "在“单个”和“批量”中选择主播。"
    ),
    "single_presenter": "或从主播库中选择",
    "single_presenter_info": "无需上传：使用在“主播库”中添加的主播",
    "batch_presenters": "主播库中的主播（可多选）",
    "batch_presenters_info": "每个选中的主播各生成一个任务，与上传的视频一起处理",
    "no_presenters": "还没有主播。请在上方添加视频或照片。",
    "col_face": "人脸",
    "col_name": "名称",
    "col_length": "时长",
    "col_size": "分辨率",
    "col_faces": "找到人脸",
    "photo": "照片",
    "seconds": "{seconds:.1f} 秒",
    "faces_of_frames": "{frames} 帧中的 {found} 帧",
    "faces_in_photo": "是",
    "faces_pending": "尚未知道",
    "presenter_state_preparing": "准备中",
    "presenter_state_ready": "就绪",
    "presenter_state_failed": "失败",
    "presenter_stage_queued": "等待处理",
    "presenter_stage_starting": "启动中",
    "presenter_stage_faces": "查找人脸",
    "presenter_stage_study": "分析主播",
    "choice_preparing": "{name}（准备中）",
    "need_presenter_file": "请先添加主播的视频或照片。",
    "presenter_added": "已添加 {name}，正在准备。",
    "presenter_renamed": "已改名为 {name}。",
    "presenter_deleted": "已删除 {name}。",
    "presenter_gone": "该主播已不在主播库中。",
    "need_presenter_pick": "请先选择一个主播。",
    "need_presenter_name": "请先输入名称。",
    "picture_and_presenter": "同时上传了视频并从主播库选择了主播：请移除上传的文件或清空所选主播，以明确使用哪一个。",
    "percent": "{percent:.0f}%",
    "elapsed_left": "已用 {elapsed} · 约剩 {left}",
    "elapsed_estimating": "已用 {elapsed} · 正在估算…",
    "batch_progress": "整批：{percent:.0f}% · {timing}",
    "history_batch": "{when} · 语音 {audio} · {videos} 个视频",
    "history_zip": "已完成结果的 ZIP",
    "choice_engine_auto": "自动",
    "choice_engine_wav2lip": "Wav2Lip",
    "choice_engine_builtin": "内置",
    "choice_face_largest": "最大的人脸",
    "choice_length_pingpong": "来回播放（正放后倒放）",
    "choice_length_loop": "循环播放（从头再放）",
    "device_cpu": "CPU",
    "device_gpu": "GPU",
    "engine_run_wav2lip": "Wav2Lip（{checkpoint}，{device}，{precision}，每批 {batch} 帧）",
    "engine_run_builtin": "内置引擎：用本人画面变形口型，{keys} 个关键口型，按{drive}驱动",
    "engine_run_builtin_plain": "内置引擎：用本人画面变形口型",
    "engine_run_builtin_footage": "内置引擎：主播本人的真实口型，按{drive}从其画面的 {frames} 帧中选取",
    "engine_run_builtin_photo": "内置引擎·照片方式：合成张嘴动作（较简单：没有主播本人张嘴的画面可用），按{drive}驱动",
    "engine_run_motion_alive": "{line}；加上了眨眼和缓慢的头部动作",
    "engine_run_motion_still": "{line}；除嘴以外保持静止",
    "engine_run_with_fallbacks": "{line}；{fallbacks}",
    "engine_run_fallback_separator": "；",
    "engine_run_fallback_made_spread": "咧嘴口型（“衣”）由主播本人的其他口型合成",
    "engine_run_fallback_made_rounded": "圆唇口型（“乌”）由主播本人的其他口型合成",
    "engine_run_fallback_torch_runtime": "使用 PyTorch 运行：更快的 ncnn 方式不可用（原因见日志）",
    "engine_run_fallback_footage_photo": "使用关键口型而非主播本人画面：照片没有可选的口型",
    "engine_run_fallback_footage_short": "使用关键口型而非主播本人画面：有人脸的画面不足 5 秒",
    "engine_run_fallback_footage_still": "使用关键口型而非主播本人画面：画面中嘴几乎没有张开",
    "engine_run_fallback_footage_none": "使用关键口型而非主播本人画面：无法分析该画面",
    "engine_run_fallback_footage_no_speech": "使用关键口型而非主播本人画面：画面中没有本人的语音可供选择口型",
    "engine_run_fallback_footage_unmatched": "使用关键口型而非主播本人画面：画面的声音与嘴型不对应（旁白、配音或音乐？）",
    "engine_run_fallback_footage_resynced": "主播画面的声音与画面不同步：已按每个口型实际对应的声音挑选口型，使其与这段语音同步",
    "precision_fp16": "半精度",
    "precision_int8": "8 位整数",
    "precision_fp32": "单精度",
    "drive_speech sounds": "语音音素",
    "drive_loudness": "音量",
    "reason_missing": "{file}：找不到该文件。",
    "reason_empty": "{file} 是空文件（0 字节）。",
    "reason_unreadable": "{file} 不是 HeyGem 能读取的视频、照片或音频文件。",
    "reason_photo_heic": "{file} 是 HEIC 照片（iPhone 拍摄的格式），HeyGem 暂时无法读取。请先存为 JPEG（iPhone 上：设置 > 相机 > 格式 > 兼容性最佳；或以 JPEG 分享）。",
    "reason_playlist": "{file} 是播放列表或其他文件的清单（{kind}），不是录音或视频；HeyGem 只读取所给的文件本身，从不读取清单中列出的文件。请直接提供视频、照片或音频文件。",
    "reason_bad_video": "{file}：该视频没有可用的时长、帧率或画面尺寸。",
    "reason_no_sound": "{file} 没有声音：语音必须是录音或带声音的视频。",
    "reason_no_picture": "{file} 只有声音：主播必须是人脸视频或照片。",
    "reason_no_frames": "{file}：视频中没有一帧能解码，文件可能已损坏。",
    "reason_no_face": "{file}：全部 {frames} 帧中都没有找到人脸。请提供人脸清晰可见的视频或照片。",
    "reason_no_face_number": "{file}：全部 {frames} 帧中都没有第 {face} 号人脸（从左往右，从 0 开始数）。",
    "reason_cut_short": "{file}：文件头标明有 {promised} 帧，但只能解码出 {decoded} 帧，文件可能不完整（上传或复制被中断）。请提供完整的文件。",
    "reason_speech_too_short": "{file}：语音只有 {seconds} 秒。",
    "reason_speech_too_long": "{file}：语音长 {length}，上限是 {limit}（可用 {option} 或 {env} 调高）。",
    "reason_speech_over_limit": "{file}：语音超过了 {limit} 的上限（可用 {option} 或 {env} 调高）。",
    "reason_video_too_long": "{file}：视频长 {length}，上限是 {limit}（可用 {option} 或 {env} 调高）。只会用到与语音一样长的部分，剪短的视频即可。",
    "reason_picture_too_large": "{file}：视频为 {width}×{height}，长边上限是 {limit} 像素（可用 {option} 或 {env} 调高），也可以先把它缩小。",
    "reason_photo_too_large": "{file}：照片为 {width}×{height} 像素（{megapixels} 百万像素），HeyGem 接受的照片最多 {limit_megapixels} 百万像素，请先把它缩小。",
    "reason_queue_full": "队列中已有 {pending} 个未完成的任务（含等待准备的主播），上限是 {limit} 个（可用 {option} 或 {env} 调高），或等一些任务完成。",
    "reason_disk_full_job": "{file}：写入结果时磁盘已满（现在可用 {free_gb} GB）。请腾出空间，例如在“历史”中删除旧结果，然后重新提交。",
    "reason_disk_full": "{file}：未保存：工作室所在磁盘只剩 {free_gb} GB 可用空间，而工作室要为已排队任务的结果保留 {limit} GB（可用 {option} 或 {env} 调低）。请腾出空间，例如在“历史”中删除旧结果。",
    "hours_minutes": "{hours} 小时 {minutes:02d} 分",
    "minutes_seconds": "{minutes} 分 {seconds:02d} 秒",
    "minutes_only": "{minutes} 分钟",
    "seconds_only": "{seconds} 秒",
    "reason_interrupted": "{file}：处理此任务时程序已中断 {attempts} 次，不再重试。",
    "reason_internal": "{file}：内部错误，详见“日志”页。",
    "on_worker": "{host} 上的工作进程 {number}（{device}）",
    "reason_worker_lost": "{file}：运行此任务的工作进程已中断 {attempts} 次，不再重试。",
    "reason_unexpected": "{file}：意外错误，详见“日志”页。",
    "reason_unknown_presenter": "没有编号为 {file} 的主播。",
    "reason_name_too_long": "主播名称最多 {limit} 个字符，这个有 {chars} 个。",
    "reason_presenter_failed": "主播 {name} 未能准备好，请用另一个文件重新添加。",
    "note_cut_short": "不完整：{file} 文件头标明有 {promised} 帧，只有 {decoded} 帧；最后 {seconds} 秒缺失，结果用现有的画面接续。",
    "note_turned": "画面旋转 {turn}° 后才找到人脸：已摆正后做口型同步，再转回原方向。",
    "note_faces_missing": "{frames} 帧中有 {missing} 帧没有人脸，保持原样。",
    "note_left_unchanged": "基本未改动：{frames} 帧中有 {missing} 帧没有人脸，只有其余 {synced} 帧做了口型同步。请提供人脸清晰可见的视频。",
    "note_scaled_down": "{file} 为 {width}×{height}，已按画面尺寸上限缩小到 {new_width}×{new_height}。",
    "note_rate_lowered": "{file} 的帧率为 {fps} fps，已按 HeyGem 的最高帧率 {new_fps} fps 读取和生成。",
    "note_rate_raised": "{file} 的帧率为 {fps} fps，太慢，口型无法说话；已按 {new_fps} fps 生成，画面帧重复使用。",
    "note_speech_silent": "{file} 全程无声，因此口型保持闭合（文件若有多条音轨，使用播放器播放的那条：标为默认的那条，否则为第一条）。",
    "note_speech_raised": "{file} 是音量很低的录音；已将其声音按提高 {db} dB 来分析，使口型跟上每个音（生成结果中的声音保持原样）。",
    "note_hdr_converted": "{file} 是 HDR 视频（{hdr}）；其色彩已按普通屏幕的显示方式转换为标准动态范围（BT.709），"
                          "生成结果也是标准动态范围。",
    "note_sound_early": "{file}：声音比发出它的嘴型早 {ms} 毫秒（录制时声画不同步）；其任务将按每个口型实际对应的声音挑选口型。",
    "note_sound_late": "{file}：声音比发出它的嘴型晚 {ms} 毫秒（录制时声画不同步）；其任务将按每个口型实际对应的声音挑选口型。",
    "tab_live": "直播",
    "live_help": (
        "选择主播库中一个已就绪的主播，点击 **开始直播**：主播会在下方播放，并说出你给它的内容（语音文件或麦克风），"
        "嘴型跟随声音。**结束直播** 即结束；关闭页面也会结束。每个直播大约占用半个 CPU 核心。"
    ),
    "live_presenter": "主播（主播库中已就绪的）",
    "live_presenter_info": "在“主播库”中添加主播，准备好后即可在此选择",
    "live_start": "开始直播",
    "live_stop": "结束直播",
    "live_mic": "使用麦克风：主播说出它听到的声音",
    "live_speech": "要说的语音（音频文件，或取其声音的视频）",
    "live_interrupt": "打断：立即说，而不是排在正在说的内容之后",
    "live_speak": "说这段语音",
    "live_hush": "停止说话",
    "live_idle": "未在直播。请选择主播后点击“开始直播”。",
    "live_starting": "正在让 {name} 上线…（载入画面需要几秒）",
    "live_connecting": "正在连接视频流…",
    "live_state_line": "{name}：{state}",
    "live_state_waiting": "连接中",
    "live_state_idle": "直播中 · 待机",
    "live_state_speaking": "直播中 · 正在说话",
    "live_state_ended": "已结束",
    "live_sent": "已发送 {count} 帧",
    "live_queued": "还有 {seconds} 秒语音待说",
    "live_fig_separator": " · ",
    "live_fig_rate": "{rate} 帧/秒",
    "live_fig_late": "迟到 {count} 帧",
    "live_fig_dropped": "丢弃 {count} 帧",
    "live_fig_latency": "延迟 {ms} 毫秒",
    "live_fig_offset": "音画偏差 {ms} 毫秒",
    "live_fig_cpu": "CPU {percent}%",
    "live_fig_size": "{width}×{height}",
    "live_fig_degraded": "已缩小画面以跟上帧率",
    "live_saying": "正在说 {file}（{seconds} 秒）。",
    "live_saying_after": "{file}（{seconds} 秒）已排队：说完当前内容后再说。",
    "live_saying_instead": "正在说 {file}（{seconds} 秒），取代了刚才的内容。",
    "live_hushed": "已停止说话。",
    "live_ended": "直播已结束。",
    "live_need_presenter": "请先选择一个已就绪的主播。",
    "live_need_session": "请先开始直播。",
    "live_need_speech": "请先选择语音文件，并等待上传完成。",
    "live_mic_on": "麦克风已打开：主播会说出它听到的声音。",
    "live_mic_off": "麦克风已关闭。",
    "live_mic_next": "直播开始后即使用麦克风。",
    "live_mic_denied": "浏览器不允许使用麦克风。",
    "live_mic_missing": "没有找到麦克风。",
    "live_mic_insecure": "浏览器只允许通过 https 或在本机（localhost）打开的页面使用麦克风。",
    "live_mic_failed": "无法使用麦克风。",
    "live_muted": "浏览器以静音方式播放了视频流：点击画面即可听到声音。",
    "live_no_webrtc": "此浏览器无法接收直播流（不支持 WebRTC）。",
    "live_connection_failed": "视频流与工作室的连接失败，直播已结束。",
    "live_unreachable": "无法连接到工作室。",
    "live_request_failed": "工作室返回 {status}：{error}",
    "reason_live_unavailable": "直播需要 aiortc，但尚未安装：请用 ./start_app.sh --live（或 pip install -r {requirements}）安装后重启工作室。",
    "reason_live_full": "已有 {limit} 个直播在运行，这是本工作室同时运行的上限（可用 {option} 或 {env} 调高）；请先结束一个。",
    "reason_live_no_presenter": "该主播已不在主播库中。",
    "reason_live_presenter_not_ready": "{name} 尚未就绪（{state}），只有已就绪的主播才能直播。",
    "reason_live_no_study": "{name} 没有可分析嘴部的人脸，无法直播。",
    "reason_live_unknown": "直播已在工作室一端结束（视频流已断开，或太久没有人观看）。",
    "reason_live_bad_audio": "{file}：无法从中读取语音（请提供音频文件，或带声音的视频）。",
    "reason_live_empty_speech": "{file} 没有声音。",
    "reason_live_speech_too_long": "{file} 长于 {limit} 分钟，即语音的上限（可用 {option} 或 {env} 调高）。",
    "reason_live_queue_full": "{file} 未加入队列：已有 {waiting_minutes} 分钟的语音在等待播出，直播会话最多保留 {limit} 分钟（可用 {option} 或 {env} 调高）。请等一部分播完，或打断它。",
}

TEXTS = {"en": EN, "zh": ZH}

# Gradio's own words that its tables lack (in English too): the page would show the key itself, such as
# "common.complete" in the status it announces when an event ends. Given to Gradio's I18n with the labels.
GRADIO_EN: dict[str, str] = {
    "common.complete": "Done",
    "common.download_all": "Download all",
    "common.progress": "Progress",
    "common.upload": "Upload",
    "common.video": "Video",
    "status.queue_position": "Waiting: {position} of {size}",
}
GRADIO_ZH: dict[str, str] = {
    "common.complete": "完成",
    "common.download_all": "全部下载",
    "common.progress": "进度",
    "common.upload": "上传",
    "common.video": "视频",
    "status.queue_position": "等待中：第 {position} 个，共 {size} 个",
}


def language(accept_language: str | None) -> str:
    """``zh`` when the browser's first language is Chinese, else ``en``."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def text(lang: str, key: str, **values: object) -> str:
    """The text for ``key`` in ``lang`` (English when missing), with ``values`` filled in."""
    template = TEXTS.get(lang, EN).get(key)
    if template is None:  # "" is a text too (no gap between Chinese sentences)
        template = EN.get(key, key)
    return template.format(**values) if values else template


def fallback_words(lang: str, codes: Iterable[str]) -> list[str]:
    """What an engine made do with (``EngineDescription.fallbacks``), each in words, in ``lang``."""
    return [text(lang, f"engine_run_fallback_{code}") for code in codes]
