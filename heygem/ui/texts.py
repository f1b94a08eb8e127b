"""Every word the studio shows, in English and Simplified Chinese.

Fixed labels go to Gradio's I18n (translated in the browser, by its language); text made while the studio
runs (progress, tables, errors) is picked here by the request's Accept-Language, which the browser sets from
the same preference.
"""
from __future__ import annotations

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
    "generate": "Generate",
    "cancel": "Cancel",
    "result": "Result",
    "download": "Download",
    "videos": "Presenters: videos or photos (select many)",
    "start_batch": "Start batch",
    "cancel_batch": "Cancel batch",
    "zip": "All finished results (ZIP)",
    "batch_results": "Finished videos, as each one is done",
    "refresh": "Refresh",
    "pick_result": "Result to play",
    "delete": "Delete this result",
    "log_tail": "Log (logs/heygem.log, newest first; the file also keeps DEBUG detail)",
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
    "stage_lip-sync": "lip-syncing",
    "stage_encode": "writing the video",
    "stage_done": "done",
    "stage_cancelling": "cancelling…",
    "bad_picture": "{name} is not a video or photo HeyGem can read. Give a video (mp4, mov, mkv, webm, avi) or a photo (jpg, png, webp).",
    "picture_is_sound": "{name} holds only sound: the presenter must be a video or photo of a face.",
    "bad_speech": "{name} is not a sound or video file HeyGem can read. Give wav, mp3, m4a, flac, ogg, aiff, or a video with sound.",
    "speech_silent": "{name}: the speech file has no sound.",
    "col_video": "Video",
    "col_state": "State",
    "col_progress": "Progress",
    "col_detail": "Details",
    "col_when": "Finished",
    "col_audio": "Speech",
    "col_engine": "Engine",
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
    "engine_info": "auto：已安装检查点时用 Wav2Lip，否则用内置引擎",
    "engine_info_no_wav2lip": (
        "auto：使用内置引擎。未提供 wav2lip：没有安装检查点。请把 Wav2Lip 项目的 wav2lip_gan.pth 放到 "
        "checkpoints/wav2lip_gan.pth，然后重新启动工作室。"
    ),
    "face": "人脸",
    "face_info": "largest（最大的人脸），或从左数的人脸编号（0 = 最左）",
    "length": "语音比视频长时",
    "quality": "视频质量（CRF，越小越好）",
    "generate": "生成",
    "cancel": "取消",
    "result": "结果",
    "download": "下载",
    "videos": "主播：视频或照片（可多选）",
    "start_batch": "开始批量",
    "cancel_batch": "取消批量",
    "zip": "全部已完成结果（ZIP）",
    "batch_results": "已完成的视频（逐个出现）",
    "refresh": "刷新",
    "pick_result": "要播放的结果",
    "delete": "删除此结果",
    "log_tail": "日志（logs/heygem.log，最新的在最上；文件中另有 DEBUG 详情）",
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
    "queue_line": " 等待或运行中的任务：{pending} 个。",
    "workers_line": " Ray 工作进程：{count} 个，{busy} 个忙碌，已完成 {done} 个任务（{where}）。",
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
    "stage_lip-sync": "口型同步中",
    "stage_encode": "写入视频",
    "stage_done": "完成",
    "stage_cancelling": "正在取消…",
    "bad_picture": "{name} 不是 HeyGem 能读取的视频或照片。请提供视频（mp4、mov、mkv、webm、avi）或照片（jpg、png、webp）。",
    "picture_is_sound": "{name} 只有声音：主播必须是人脸视频或照片。",
    "bad_speech": "{name} 不是 HeyGem 能读取的音频或视频文件。请提供 wav、mp3、m4a、flac、ogg、aiff，或带声音的视频。",
    "speech_silent": "{name}：语音文件没有声音。",
    "col_video": "视频",
    "col_state": "状态",
    "col_progress": "进度",
    "col_detail": "详情",
    "col_when": "完成时间",
    "col_audio": "语音",
    "col_engine": "引擎",
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
}

TEXTS = {"en": EN, "zh": ZH}


def language(accept_language: str | None) -> str:
    """``zh`` when the browser's first language is Chinese, else ``en``."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def text(lang: str, key: str, **values: object) -> str:
    """The text for ``key`` in ``lang`` (English when missing), with ``values`` filled in."""
    template = TEXTS.get(lang, EN).get(key) or EN.get(key, key)
    return template.format(**values) if values else template
